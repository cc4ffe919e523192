"""Baseline for the HTTP benchmark: a bare Flask route on the frontend's server.

    .venv/bin/python bench/bare_route.py --config config.toml --port 8100

``GET /stocks/<name>`` answers ``{"data": {"name", "price", "quantity"}}``,
the shape and size of a cached Bazaar lookup, without touching a cache, a
lock or a socket. It is served by :class:`frontend.__main__.FrontendServer`
itself (gunicorn, one gevent worker, the same keep-alive, connection limit
and log settings), so the only difference from a cached lookup is the work
the frontend does for it. ``python -m client bench`` starts and stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask, jsonify  # noqa: E402

from common import config as configuration  # noqa: E402
from common import logs  # noqa: E402
from common.node import run_main  # noqa: E402
from frontend.__main__ import FrontendServer  # noqa: E402

PRICE = 15.99
QUANTITY = 100


def create_bare_app() -> Flask:
    """The one-route application."""
    app = Flask(__name__)

    @app.get("/stocks/<path:name>")
    def lookup(name: str):
        return jsonify({"data": {"name": name, "price": PRICE, "quantity": QUANTITY}})

    return app


class BareRouteServer(FrontendServer):
    """The frontend's gunicorn settings, serving :func:`create_bare_app`."""

    def load(self):
        return create_bare_app()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/bare_route.py", description=__doc__.split("\n\n")[0])
    configuration.add_arguments(parser)
    parser.add_argument("--port", type=int, required=True, help="where to listen on 127.0.0.1")
    args = parser.parse_args()
    config = configuration.from_args(args, ['frontend.host="127.0.0.1"', f"frontend.port={args.port}"])
    logs.configure("bare-route", config.log_level)
    BareRouteServer(config, "bare-route", cache=False).run()


if __name__ == "__main__":
    run_main(main)
