"""``python -m broker.monitor --config config.toml``: watch the cluster live.

``--json`` prints one JSON object per line instead (``--topic`` picks which);
``--once SECONDS`` listens that long, prints the view once as text and exits;
``--prometheus HOST:PORT`` draws nothing and serves the cluster's metrics
for Prometheus there (:mod:`broker.monitor.exporter`).
docs/MONITOR.md explains every column, every line and every metric.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import zmq

from common import config as configuration
from common import logs, security
from common.logs import get_logger
from common.node import run_main, stop_on_signals

from .exporter import Address, Exporter, SnapshotSink
from .jsonlines import TOPIC_NAMES, JsonLines
from .listener import Listener
from .state import MonitorState

log = get_logger("broker.monitor")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m broker.monitor",
        description="A live view of a Bazaar cluster: node health, the order leader and its epoch, "
                    "trade, lookup and invalidation rates, and ZeroMQ socket events.",
    )
    configuration.add_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line (bus messages and derived events) instead of the view")
    parser.add_argument("--topic", action="append", default=[], choices=sorted(TOPIC_NAMES), metavar="TOPIC",
                        help="with --json, print only these (repeatable): hb|heartbeat, leader, stock, event, "
                             "derived (the monitor's conclusions), socket (its own socket events)")
    parser.add_argument("--once", type=float, metavar="SECONDS",
                        help="listen for SECONDS, print the view once as plain text and exit")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="exit after SECONDS")
    parser.add_argument("--width", type=int, help="columns of the view (default: the terminal's, or 120)")
    parser.add_argument("--prometheus", metavar="HOST:PORT",
                        help="draw nothing; serve the cluster's metrics for Prometheus on HOST:PORT "
                             "(':PORT' for every address)")
    args = parser.parse_args()
    if args.topic and not args.json:
        parser.error("--topic only applies with --json")
    if args.prometheus is not None:
        for name in ("json", "once", "width"):
            if getattr(args, name):
                parser.error(f"--{name} does not go with --prometheus (the exporter draws nothing)")
        try:
            args.prometheus = Address.parse(args.prometheus)
        except ValueError as exc:
            parser.error(str(exc))
    for name in ("once", "duration", "width"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be positive")
    return args


def main() -> None:
    args = parse_args()
    config = configuration.from_args(args)
    # Log lines would tear the live view; only errors (or what --log-level asks).
    default_level = "info" if args.prometheus else "warning" if args.json else "error"
    logs.configure("monitor", args.log_level or default_level)
    stop = stop_on_signals()
    state = MonitorState.from_config(config)
    curve = security.node_keys(config, security.MONITOR).client("broker")
    ctx = zmq.Context()
    try:
        if args.prometheus:
            _export(args, config, state, ctx, stop, curve)
        elif args.json:
            listener = Listener(ctx, config.broker.xpub.connect, state, JsonLines(sys.stdout, args.topic), stop,
                                curve=curve)
            try:
                listener.run(args.duration)
            finally:
                listener.close()
            _quiet_closed_stdout()
        else:
            _view(args, config, state, ctx, stop, curve)
    finally:
        ctx.term()


def _view(args, config, state, ctx, stop, curve) -> None:
    from rich.console import Console

    from .view import LiveView, Quiet

    title = f"Bazaar monitor · {config.path.name}" + (" · monitor without CURVE" if curve is None else "")
    if args.once is not None:
        sink = Quiet(Console(width=args.width or 120, height=60), title)
    else:
        sink = LiveView(Console(width=args.width), title)
    listener = Listener(ctx, config.broker.xpub.connect, state, sink, stop, curve=curve)
    try:
        with sink:
            listener.run(args.once if args.once is not None else args.duration)
        if isinstance(sink, Quiet) and not stop.is_set():
            sink.print(state, time.monotonic(), time.time())
    finally:
        listener.close()


def _export(args, config, state, ctx, stop, curve) -> None:
    sink = SnapshotSink()
    try:
        exporter = Exporter(args.prometheus, sink, time.monotonic)
    except OSError as exc:
        log.error("cannot serve metrics", address=str(args.prometheus), error=str(exc))
        sys.exit(f"cannot serve metrics on {args.prometheus}: {exc}")
    log.info("serving metrics", url=f"http://{Address(args.prometheus.host, exporter.port)}/metrics",
             bus=config.broker.xpub.connect)
    listener = Listener(ctx, config.broker.xpub.connect, state, sink, stop, curve=curve)
    try:
        listener.run(args.duration)
    finally:
        listener.close()
        exporter.close()


def _quiet_closed_stdout() -> None:
    """If the reader of stdout went away, point stdout at /dev/null so that
    the interpreter's final flush does not print a BrokenPipeError."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    run_main(main)
