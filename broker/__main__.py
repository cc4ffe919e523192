"""``python -m broker --config config.toml``: run the bus's proxy."""

from __future__ import annotations

import argparse
import time

import zmq

from common import config as configuration
from common import logs
from common.node import run_main, stop_on_signals

from .server import Broker


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m broker", description="Run the Bazaar bus broker.")
    configuration.add_arguments(parser)
    args = parser.parse_args()
    config = configuration.from_args(args)
    logs.configure("broker", config.log_level)
    stop = stop_on_signals()
    ctx = zmq.Context()
    try:
        Broker(config, ctx, stop, time.monotonic()).run()
    finally:
        ctx.destroy(linger=0)


if __name__ == "__main__":
    run_main(main)
