"""``python -m catalog --config config.toml``: run the catalog node."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import zmq

from common import config as configuration
from common import logs
from common.node import run_main, stop_on_signals

from .server import CatalogServer


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m catalog",
        description="Run the Bazaar catalog node: the stock table as a projection of the order log.")
    configuration.add_arguments(parser)
    parser.add_argument("--endpoint", help="override catalog.endpoint (and its bind address)")
    parser.add_argument("--storage-faults", type=Path, help=argparse.SUPPRESS)  # fault tests only
    args = parser.parse_args()
    extra = [f'catalog.endpoint="{args.endpoint}"', f'catalog.bind="{args.endpoint}"'] if args.endpoint else []
    config = configuration.from_args(args, extra)
    logs.configure("catalog", config.log_level)
    stop = stop_on_signals()
    ctx = zmq.Context()
    try:
        CatalogServer(config, ctx, stop, time.monotonic(), storage_faults=args.storage_faults).run()
    finally:
        ctx.destroy(linger=0)


if __name__ == "__main__":
    run_main(main)
