"""Baseline for the HTTP benchmark: a bare ZeroMQ ROUTER that answers lookups.

    .venv/bin/python bench/zmq_echo.py --endpoint tcp://127.0.0.1:5700

Each request is one msgpack map like the frontend's ``Lookup``
(``{"v": 1, "msg": "lookup", "name": ...}``); the answer is one msgpack map
like the catalog's ``StockInfo``. No validation, no database, no bus: what is
left is ZeroMQ's REQ -> ROUTER round trip over loopback TCP plus msgpack on
both sides, the unit in which the benchmark states what a frontend -> catalog
trip costs. ``python -m client bench`` starts and stops it; the client side is
:func:`client.workers.prepare_zmq`.
"""

from __future__ import annotations

import argparse
import signal
import threading

import msgpack
import zmq

# How long one poll waits, so that a stop request is seen promptly.
POLL_MS = 100


def serve(endpoint: str, stop: threading.Event) -> None:
    """Answer lookups on ``endpoint`` until ``stop`` is set."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    print(f"zmq echo listening on {endpoint}", flush=True)
    try:
        while not stop.is_set():
            if not router.poll(POLL_MS):
                continue
            frames = router.recv_multipart()
            if len(frames) < 3:
                continue  # no envelope to answer to
            try:
                request = msgpack.unpackb(frames[-1])
                name = request["name"]
            except (ValueError, KeyError, TypeError):
                continue
            reply = {"v": 1, "msg": "stock_info", "name": name, "price": 15.99, "quantity": 100, "version": 1}
            router.send_multipart([*frames[:-1], msgpack.packb(reply)])
    finally:
        router.close(linger=0)
        ctx.term()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/zmq_echo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="where to bind, e.g. tcp://127.0.0.1:5700")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(args.endpoint, stop)


if __name__ == "__main__":
    main()
