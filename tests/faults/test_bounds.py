"""Resource bounds: a flood of garbage, or a consumer that never reads, must
not make a node's memory grow without bound. The high-water marks of
common/sockets.py (documented in docs/PROTOCOL.md, "Resource bounds") make
ZeroMQ drop or refuse instead of queueing forever.
"""

from __future__ import annotations

import pytest
import zmq

from common import codec
from common.protocol import Lookup
from harness.cluster import wait_until

pytestmark = pytest.mark.slow

MB = 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_flood_from_a_client_that_never_reads_its_replies_stays_bounded(cluster_factory):
    """200,000 requests, half garbage, from one DEALER that reads nothing:
    the catalog answers each one, and its ROUTER drops the replies beyond the
    high-water mark instead of keeping them all."""
    cluster = cluster_factory()
    catalog = cluster.node("catalog")
    before = rss(catalog.pid)
    ctx = zmq.Context()
    sock = cluster.secure(ctx.socket(zmq.DEALER), "catalog")
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(cluster.endpoint("catalog"))
    lookup = codec.encode(Lookup("FishCo"))
    try:
        for k in range(100_000):
            sock.send_multipart([b"", lookup], copy=False)
            sock.send_multipart([b"", b"\xc1" * 64], copy=False)
        # Wait until the catalog has worked through the flood: a fresh client gets an answer.
        wait_until(lambda: cluster.api.get("/stocks/GameStart").status == 200, 30, "the catalog to answer again")
        wait_until(lambda: _served(cluster), 60, "the catalog to drain the flood")
        grown = rss(catalog.pid) - before
    finally:
        sock.close(linger=0)
        ctx.term()
    assert catalog.alive
    assert grown < 64 * MB, f"the catalog grew by {grown / MB:.1f} MB"


def _served(cluster) -> bool:
    ctx = zmq.Context()
    sock = cluster.secure(ctx.socket(zmq.REQ), "catalog")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint("catalog"))
    try:
        sock.send(codec.encode(Lookup("GameStart")))
        return bool(sock.poll(200))
    finally:
        sock.close(linger=0)
        ctx.term()


def test_a_subscriber_that_never_reads_does_not_grow_the_broker(cluster_factory):
    """A SUB that subscribes to everything and never reads, while 300,000
    messages cross the bus: the broker's XPUB drops for that subscriber at its
    high-water mark, and every other subscriber keeps receiving."""
    cluster = cluster_factory()
    broker = cluster.node("broker")
    ctx = zmq.Context()
    slow = cluster.secure(ctx.socket(zmq.SUB), "xpub")
    slow.setsockopt(zmq.LINGER, 0)
    slow.setsockopt(zmq.RCVHWM, 10)
    slow.setsockopt(zmq.RCVBUF, 4096)
    slow.setsockopt(zmq.SUBSCRIBE, b"")
    slow.connect(cluster.endpoint("xpub"))
    pub = cluster.secure(ctx.socket(zmq.PUB), "xsub")
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(cluster.endpoint("xsub"))
    try:
        # Wait until the slow subscriber is known to the broker (it receives heartbeats).
        wait_until(lambda: slow.poll(100), 5, "the slow subscriber to be connected")
        wait_until(lambda: cluster.api.get("/stats").data["heard"].get("broker", 9) < 0.5, 5, "the frontend")
        before = rss(broker.pid)
        payload = b"x" * 200
        for k in range(300_000):
            pub.send_multipart([b"zz-flood", payload])
        # The frontend still hears the broker's heartbeats through the flood.
        wait_until(lambda: cluster.api.get("/stats").data["heard"].get("broker", 9) < 0.3, 30,
                   "the broker's heartbeats after the flood")
        grown = rss(broker.pid) - before
    finally:
        slow.close(linger=0)
        pub.close(linger=0)
        ctx.term()
    assert broker.alive
    assert grown < 64 * MB, f"the broker grew by {grown / MB:.1f} MB"
    assert cluster.api.get("/stats").data["cache"]["streaming"] is True
