"""Baseline for the HTTP benchmark: a bare Flask route on the frontend's server.

    .venv/bin/python -m bench.bare_route --config config.toml --port 8100

``GET /stocks/<name>`` answers ``{"data": {"name", "price", "quantity"}}``,
the shape and size of a cached Bazaar lookup, without touching a cache, a
lock or a socket. It is served by :class:`frontend.server.FrontendServer`
itself (gevent.pywsgi in one process, the same keep-alive, limits and
connection pool), so the only difference from a cached lookup is the work
the frontend does for it. ``python -m client bench`` starts and stops it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

from flask import Flask, jsonify  # noqa: E402

from common import config as configuration  # noqa: E402
from common import logs  # noqa: E402
from common.node import run_main  # noqa: E402
from frontend.server import FrontendServer, serve  # noqa: E402

PRICE = 15.99
QUANTITY = 100


def create_bare_app() -> Flask:
    """The one-route application."""
    app = Flask(__name__)

    @app.get("/stocks/<path:name>")
    def lookup(name: str):
        return jsonify({"data": {"name": name, "price": PRICE, "quantity": QUANTITY}})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_route", description=__doc__.split("\n\n")[0])
    configuration.add_arguments(parser)
    parser.add_argument("--port", type=int, required=True, help="where to listen on 127.0.0.1")
    args = parser.parse_args()
    config = configuration.from_args(args, ['frontend.host="127.0.0.1"', f"frontend.port={args.port}"])
    logs.configure("bare-route", config.log_level)
    serve(FrontendServer("127.0.0.1", args.port, create_bare_app(), config.frontend.connections), lambda: None)


if __name__ == "__main__":
    run_main(main)
