"""``python -m frontend --config config.toml``: serve the HTTP API.

One process on gevent (:mod:`frontend.server`): gevent patches the standard
library first, so the bus watcher's thread and every wait are greenlets.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402  (after the patching, as gevent requires)

from common import config as configuration  # noqa: E402
from common import logs, security  # noqa: E402
from common.node import run_main  # noqa: E402

from .backend import FAILPOINTS  # noqa: E402


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
    security.node_keys(config, security.FRONTEND)  # missing keys stop it here, with a message

    from .app import create_app
    from .server import FrontendServer, serve

    app = create_app(config, name=args.name, cache=args.cache, failpoint=args.failpoint)
    fe = config.frontend
    serve(FrontendServer(fe.host, fe.port, app, fe.connections), app.extensions["bazaar"].close)


if __name__ == "__main__":
    run_main(main)
