"""``python -m order --config config.toml --id N``: run order replica N."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import zmq

from common import config as configuration
from common import logs
from common.errors import ConfigError
from common.node import run_main, stop_on_signals

from .server import FAILPOINTS, OrderServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m order", description="Run one Bazaar order replica.")
    configuration.add_arguments(parser)
    parser.add_argument("--id", type=int, help="which [[order]] of the config to run (required with several)")
    parser.add_argument("--failpoint", choices=FAILPOINTS, help=argparse.SUPPRESS)  # fault tests only
    parser.add_argument("--storage-faults", type=Path, help=argparse.SUPPRESS)  # fault tests only
    parser.add_argument("--distrust-after", type=int, metavar="INDEX",
                        help="drop the log's entries after INDEX before starting: what was written after the "
                             "last good fsync (the replica passes it itself when it restarts after a failed one)")
    args = parser.parse_args()
    config = configuration.from_args(args)
    if args.id is None:
        if len(config.orders) != 1:
            raise ConfigError(f"{config.path} has {len(config.orders)} replicas: say which with --id")
        args.id = config.orders[0].id
    name = config.replica(args.id).name
    logs.configure(name, config.log_level)
    stop = stop_on_signals()
    ctx = zmq.Context()
    try:
        OrderServer(config, args.id, ctx, stop, time.monotonic(), failpoint=args.failpoint,
                    storage_faults=args.storage_faults, distrust_after=args.distrust_after).run()
    finally:
        ctx.destroy(linger=0)


if __name__ == "__main__":
    run_main(main)
