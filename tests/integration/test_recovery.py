"""Durability, unavailability and bad input at the process level.

Nodes are killed with SIGKILL, never asked politely; garbage goes straight to
the ZeroMQ sockets of the catalog and of an order replica.
"""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from common import codec
from common.protocol import PROTOCOL_VERSION, CommittedEntries, Lookup, PlaceTrade, ReadCommitted, StockInfo
from harness.cluster import wait_until

pytestmark = pytest.mark.slow

FAST = {"timeouts": {"request_ms": 300, "lookup_attempts": 2, "trade_deadline_ms": 1500}}


def trade(api, name, quantity, side):
    return api.post("/orders", {"name": name, "quantity": quantity, "type": side})


def test_catalog_and_order_state_survive_sigkill_and_restart(cluster_factory):
    cluster = cluster_factory()
    done = [trade(cluster.api, "GameStart", q, side).data for q, side in ((5, "buy"), (2, "sell"), (9, "buy"))]
    assert all(done)
    stocks_before = cluster.stocks()
    for name in ("catalog", "order-1", "order-2", "order-3"):
        cluster.node(name).kill()
    for name in ("catalog", "order-1", "order-2", "order-3"):
        cluster.node(name).start()
    cluster.wait_ready()

    assert cluster.stocks() == stocks_before
    quantity = wait_until(lambda: cluster.api.get("/stocks/GameStart").data, 10, "a lookup")["quantity"]
    assert quantity == 100 - 5 + 2 - 9
    for order in done:
        reply = wait_until(lambda o=order: cluster.api.get(f"/orders/{o['transaction_number']}").data, 10,
                           "the order after restart")
        assert reply == order
    # Numbering continues where it stopped.
    assert trade(cluster.api, "GameStart", 1, "sell").data["transaction_number"] == done[-1]["transaction_number"] + 1


def test_with_the_catalog_down_lookups_and_trades_are_answered_and_it_catches_up_after(cluster_factory):
    cluster = cluster_factory(settings=FAST)
    cluster.node("catalog").kill()
    reply = cluster.api.get("/stocks/TorcJewels")  # never looked up: not cached; an order replica answers
    assert reply.status == 200 and reply.data["quantity"] == 100
    done = trade(cluster.api, "TorcJewels", 4, "buy")
    assert done.status == 200
    # Read your writes, catalog or not: from a replica, or from the cache the leader's change stream updated.
    assert cluster.api.get("/stocks/TorcJewels").data["quantity"] == 96
    assert cluster.stats()["backend"]["replica_lookups"] >= 1
    cluster.node("catalog").start()
    assert cluster.stocks()["TorcJewels"][1] == 96  # it caught up from the log


def test_order_service_down_gives_503_within_the_deadline_then_recovers(cluster_factory):
    cluster = cluster_factory(settings=FAST)
    for i in (1, 2, 3):
        cluster.replica(i).kill()
    reply = trade(cluster.api, "FishCo", 1, "buy")
    assert reply.status == 503
    assert reply.error["code"] == 503
    assert reply.elapsed < 1.5 + 1.5
    assert cluster.api.get("/orders/1").status == 503
    for i in (1, 2, 3):
        cluster.replica(i).start()
    done = wait_until(lambda: trade(cluster.api, "FishCo", 1, "buy").data, 20, "trades to recover")
    assert done["name"] == "FishCo"


# --- garbage on the ZeroMQ sockets -------------------------------------------------

GARBAGE_FRAMES = [
    [b"no envelope at all"],
    [b"a", b"b", b"c"],
    [b"", b"\xc1\xc1\xc1"],                                      # not msgpack
    [b"", msgpack.packb([1, 2, 3])],                             # not a map
    [b"", msgpack.packb({"v": 99, "msg": "lookup", "name": "FishCo"})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "no_such_message"})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "lookup", "name": 12})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "lookup"})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "place_trade", "request_id": "r", "name": "FishCo",
                         "quantity": 2**63, "side": "buy"})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "read_committed", "after": "1", "limit": 10})],
    [b"", msgpack.packb({1: 2})],
    # Well formed but for integers past 64 signed bits (they once crashed SQLite):
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "read_committed", "after": 2**64 - 1, "limit": 10})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "get_order", "txn": 2**64 - 1})],
    [b"", msgpack.packb({"v": PROTOCOL_VERSION, "msg": "vote_request", "term": 2**64 - 1, "candidate": 9,
                         "last_index": 0, "last_term": 0, "pre_vote": False})],
    [b"", b""],
    [b"", codec.encode(StockInfo("FishCo", 1.0, 1, 1, 1, 1))],   # a valid message, wrong direction
    [b"", codec.encode(PlaceTrade("r-bad", "FishCo", 0, "buy"))],  # zero quantity
    [b"", codec.encode(PlaceTrade("r-bad", "FishCo", 1, "hold"))],
    [b"", codec.encode(ReadCommitted(after=-1, limit=0))],         # the catalog's fetch, out of range
    [b"", codec.encode(CommittedEntries(entries=[], commit=9))],   # a reply, sent as a request
]


def _send_garbage(cluster, name: str) -> list[dict]:
    """Send every garbage message on one DEALER (with the cluster's tools
    key: the point is the message layer, past the CURVE handshake); collect
    the error replies (one is due for each message that has an envelope to answer)."""
    expected = sum(1 for frames in GARBAGE_FRAMES if len(frames) == 2 and frames[0] == b"")
    ctx = zmq.Context()
    sock = cluster.secure(ctx.socket(zmq.DEALER), name)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint(name))
    replies = []
    try:
        for frames in GARBAGE_FRAMES:
            sock.send_multipart(frames)
        deadline = time.monotonic() + 10
        while len(replies) < expected and time.monotonic() < deadline:
            if sock.poll(100):
                replies.append(msgpack.unpackb(sock.recv_multipart()[-1]))
        while sock.poll(200):  # and nothing more
            replies.append(msgpack.unpackb(sock.recv_multipart()[-1]))
    finally:
        sock.close(linger=0)
        ctx.term()
    return replies


def _healthy_lookup(cluster) -> bool:
    ctx = zmq.Context()
    sock = cluster.secure(ctx.socket(zmq.REQ), "catalog")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint("catalog"))
    try:
        sock.send(codec.encode(Lookup("FishCo")))
        return bool(sock.poll(2000)) and isinstance(codec.decode(sock.recv()), StockInfo)
    finally:
        sock.close(linger=0)
        ctx.term()


@pytest.mark.parametrize("target", ["catalog", "leader", "follower"])
def test_garbage_frames_get_an_error_or_are_dropped_and_the_node_keeps_serving(cluster_factory, target):
    cluster = cluster_factory()
    assert trade(cluster.api, "FishCo", 3, "buy").status == 200
    leader = cluster.leader()
    name = {"catalog": "catalog", "leader": f"order-{leader}",
            "follower": f"order-{1 if leader != 1 else 2}"}[target]
    # A trade is acknowledged once a majority has it: let the third replica catch up too.
    wait_until(lambda: cluster.order_log(1) == cluster.order_log(2) == cluster.order_log(3), 10, "identical logs")
    stocks = cluster.stocks()
    logs = {i: cluster.order_log(i) for i in (1, 2, 3)}

    replies = _send_garbage(cluster, name)

    # Every message with an envelope got an error reply; the two without one were dropped.
    assert len(replies) == len(GARBAGE_FRAMES) - 2, replies
    for reply in replies:
        assert reply["msg"] == "error" and reply["v"] == PROTOCOL_VERSION
        assert reply["code"] in ("bad_request", "unsupported_version", "not_leader"), reply
    assert cluster.node(name).alive
    if name == "catalog":
        assert _healthy_lookup(cluster)
    assert cluster.stocks() == stocks
    assert {i: cluster.order_log(i) for i in (1, 2, 3)} == logs
    # The whole system still trades.
    assert trade(cluster.api, "FishCo", 1, "sell").status == 200


def test_a_message_over_the_size_limit_closes_only_that_connection(cluster_factory):
    cluster = cluster_factory()
    cluster.wait_lookups()
    ctx = zmq.Context()
    big = cluster.secure(ctx.socket(zmq.DEALER), "catalog")
    small = cluster.secure(ctx.socket(zmq.DEALER), "catalog")
    for sock in (big, small):
        sock.setsockopt(zmq.LINGER, 0)
    events = big.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:
        big.connect(cluster.endpoint("catalog"))
        small.connect(cluster.endpoint("catalog"))

        def next_event(wanted: int) -> bool:
            while events.poll(5000):
                if recv_monitor_message(events)["event"] == wanted:
                    return True
            return False

        assert next_event(zmq.EVENT_CONNECTED)
        big.send_multipart([b"", b"\x00" * (5 * 1024 * 1024)])
        assert next_event(zmq.EVENT_DISCONNECTED), "the catalog kept the oversized sender's connection"
        # The other connection to the same catalog still gets answers.
        small.send_multipart([b"", codec.encode(Lookup("FishCo"))])
        assert small.poll(5000), "the catalog stopped answering other connections"
        answer = codec.decode(small.recv_multipart()[-1])
        assert getattr(answer, "name", None) == "FishCo", answer
    finally:
        big.disable_monitor()
        for sock in (events, big, small):
            sock.close(linger=0)
        ctx.term()
    assert cluster.node("catalog").alive
    assert cluster.api.get("/stocks/FishCo").status == 200
