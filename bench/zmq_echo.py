"""Baseline for the HTTP benchmark: a bare ZeroMQ ROUTER that answers lookups.

    .venv/bin/python bench/zmq_echo.py --endpoint tcp://127.0.0.1:5700 [--config config.toml]

Each request is a protocol :class:`common.protocol.Lookup` and the answer a
:class:`common.protocol.StockInfo` (a fixed price and quantity), both through
:mod:`common.codec` as between the frontend and the catalog. No database, no
bus: what is left is ZeroMQ's REQ -> ROUTER round trip over loopback TCP plus
the codec on both sides, the unit in which the benchmark states what a
frontend -> catalog trip costs. A request that does not decode gets the
``bad_request`` error, as the catalog answers it. ``python -m client bench``
starts and stops it; the client side is :func:`client.workers.prepare_zmq`.

With ``--config`` of a cluster that runs CURVE, the ROUTER is a CURVE server
as the catalog's is: the ``tools`` key pair, and a ZAP handler
(:class:`common.security.ZapHandler`, polled in the same loop) that lets in
the cluster's public keys, so the round trip pays the encryption a
frontend -> catalog trip pays. Without ``--config`` (or with CURVE off) the
socket is plain.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq  # noqa: E402

from common import config as configuration  # noqa: E402
from common import rpc, security  # noqa: E402
from common.errors import RemoteProtocolError, error_code  # noqa: E402
from common.node import run_main  # noqa: E402
from common.sockets import CurveServer, apply_curve  # noqa: E402
from common.protocol import Error, ErrorCode, Lookup, StockInfo  # noqa: E402

# How long one poll waits, so that a stop request is seen promptly.
POLL_MS = 100
PRICE = 15.99
QUANTITY = 100


def answer(request) -> StockInfo | Error:
    """The reply to one decoded request (or its decoding error)."""
    if isinstance(request, RemoteProtocolError):
        return Error(error_code(request), str(request))
    if not isinstance(request, Lookup):
        return Error(ErrorCode.BAD_REQUEST, f"{request.MSG!r} is not a lookup")
    return StockInfo(name=request.name, price=PRICE, quantity=QUANTITY, volume=0, version=1, index=1)


def serve(endpoint: str, stop: threading.Event, keys: security.NodeKeys | None = None) -> None:
    """Answer lookups on ``endpoint`` until ``stop`` is set.

    :param keys: the ``tools`` keys of a cluster that runs CURVE (None: a plain socket).
    """
    ctx = zmq.Context()
    zap = None
    curve: CurveServer | None = None
    if keys is not None and keys.curve:
        zap = security.ZapHandler(ctx, keys.allowed(), lambda r: print(f"refused {r}", flush=True))
        zap.serve_domain("router")
        curve = keys.server("router")
    router = apply_curve(ctx.socket(zmq.ROUTER), curve)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    if zap is not None:
        poller.register(zap.sock, zmq.POLLIN)
    print(f"zmq echo listening on {endpoint}, CURVE {'on' if curve else 'off'}", flush=True)
    try:
        while not stop.is_set():
            ready = dict(poller.poll(POLL_MS))
            if zap is not None and zap.sock in ready:
                zap.handle()
            if router not in ready:
                continue
            got = rpc.recv_request(router)
            if got is None:
                continue  # no envelope to answer to
            envelope, request = got
            rpc.send_reply(router, envelope, answer(request))
    finally:
        router.close(linger=0)
        if zap is not None:
            zap.close()
        ctx.term()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/zmq_echo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="where to bind, e.g. tcp://127.0.0.1:5700")
    parser.add_argument("--config", help="a cluster's config.toml: run CURVE as its nodes do, with the tools key")
    args = parser.parse_args()
    keys = security.node_keys(configuration.load(args.config), security.TOOLS) if args.config else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(args.endpoint, stop, keys)


if __name__ == "__main__":
    run_main(main)
