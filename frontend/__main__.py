"""``python -m frontend --config config.toml``: serve the HTTP API.

The server is gunicorn with one gevent worker. Measured on this machine
(docs/PERFORMANCE.md and shared/measurements/machine-limits.md), gunicorn's
gevent worker serves a Flask route with one ZeroMQ round trip about 1.4x
faster than gthread, sync or waitress at 16 connections, and as fast as any at
one. One worker process, not several: the lookup cache, the bus subscription
and read-your-writes all live in one process. For more throughput, run more
frontends (each with its own port and ``--name``) behind a load balancer;
README.md shows how.
"""

from __future__ import annotations

import argparse
import json

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from common import config as configuration
from common import logs, security
from common.node import run_main

from .backend import FAILPOINTS


class FrontendServer(BaseApplication):
    """gunicorn, configured from config.toml instead of its own files."""

    def __init__(self, config: configuration.Config, name: str, cache: bool | None,
                 failpoint: str | None = None) -> None:
        self.bazaar_config = config
        self.name = name
        self.cache = cache
        self.failpoint = failpoint
        super().__init__()

    def load_config(self) -> None:
        fe = self.bazaar_config.frontend
        settings = {
            "bind": [f"{fe.host}:{fe.port}"],
            "workers": 1,
            "worker_class": "gevent",
            "worker_connections": fe.connections,
            "keepalive": 75,
            "timeout": 30,
            "graceful_timeout": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": self.bazaar_config.log_level,
            "proc_name": f"bazaar-{self.name}",
            "worker_exit": _close_state,
            "control_socket_disable": True,  # gunicorn >= 24; one per host would clash between frontends
        }
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        # Runs in the worker, after the fork and gevent's monkey-patching, so
        # the ZeroMQ context and every socket are created where they are used.
        from .app import create_app

        # Requests gunicorn refuses before Flask sees them (a bad request line,
        # a control character in a header) get the API's error shape too.
        gunicorn_util.write_error = _write_json_error
        return create_app(self.bazaar_config, name=self.name, cache=self.cache, failpoint=self.failpoint)


def _write_json_error(sock, status: int, reason: str, message: str) -> None:
    body = json.dumps({"error": {"code": status, "message": message or reason}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


def _close_state(_arbiter, worker) -> None:
    state = getattr(worker.wsgi, "extensions", {}).get("bazaar")
    if state is not None:
        state.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m frontend", description="Serve the Bazaar HTTP API.")
    configuration.add_arguments(parser)
    parser.add_argument("--host", help="override frontend.host")
    parser.add_argument("--port", type=int, help="override frontend.port")
    parser.add_argument("--name", default="frontend", help="node name on the bus (default %(default)s)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache", dest="cache", action="store_true", default=None, help="cache lookups")
    cache.add_argument("--no-cache", dest="cache", action="store_false", help="send every lookup to the catalog")
    parser.add_argument("--cache-size", type=int, help="override frontend.cache_size")
    parser.add_argument("--failpoint", choices=FAILPOINTS, help=argparse.SUPPRESS)  # fault tests only
    args = parser.parse_args()
    extra = []
    if args.host:
        extra.append(f'frontend.host="{args.host}"')
    if args.port is not None:
        extra.append(f"frontend.port={args.port}")
    if args.cache_size is not None:
        extra.append(f"frontend.cache_size={args.cache_size}")
    config = configuration.from_args(args, extra)
    logs.configure(args.name, config.log_level)
    security.node_keys(config, security.FRONTEND)  # missing keys stop it here, not in a restarting worker
    FrontendServer(config, args.name, args.cache, args.failpoint).run()


if __name__ == "__main__":
    run_main(main)
