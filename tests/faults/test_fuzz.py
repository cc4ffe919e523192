"""Fuzzing: hypothesis-made HTTP requests against a frontend, and random
frames and msgpack values against every ROUTER socket.

No node may crash; every HTTP answer keeps the API's shape; bad input
changes nothing (the only trades in the log are the ones that got a 200).
"""

from __future__ import annotations

import json

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.protocol import MESSAGES, PROTOCOL_VERSION
from harness.cluster import Http, initial_stocks

pytestmark = pytest.mark.slow

ALLOWED = {200, 400, 403, 404, 405, 409, 413, 422}
NAMES = sorted(initial_stocks())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Bodies that look like orders, with every field possibly wrong.
order_like = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(NAMES) | st.text(max_size=70) | json_values,
    "quantity": st.integers(min_value=-5, max_value=2_000_000) | json_values,
    "type": st.sampled_from(["buy", "sell", "BUY", "hold", ""]) | json_values,
})
bodies = (
    order_like.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
)
segments = st.text(alphabet=st.characters(codec="ascii", exclude_characters="/?#%\x00"), min_size=0, max_size=20)
paths = st.one_of(
    st.builds(lambda n: f"/stocks/{n}", st.sampled_from(NAMES) | segments),
    st.builds(lambda n: f"/orders/{n}", st.integers(-10, 10**20).map(str) | segments),
    st.builds(lambda n: f"/invalidate/{n}", st.sampled_from(NAMES) | segments),
    st.just("/orders"), st.just("/stats"),
    st.lists(segments, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)
keys = st.none() | st.text(alphabet=st.characters(codec="ascii"), max_size=140)


@pytest.fixture(scope="module")
def fuzz_http(shared_cluster):
    http = Http(shared_cluster.http_ports[0])
    yield shared_cluster, http
    http.close()


def _safe_path(path: str) -> str:
    return "".join(c if 32 < ord(c) < 127 else f"%{ord(c):02X}" for c in path)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]), path=paths, body=bodies, key=keys)
def test_http_fuzz_keeps_the_shape_and_changes_nothing_unacknowledged(fuzz_http, method, path, body, key):
    cluster, http = fuzz_http
    headers = {} if key is None else {"Idempotency-Key": key.replace("\r", "").replace("\n", "")}
    reply = http.request(method, _safe_path(path), raw=body if method in ("POST", "PUT", "PATCH") else None,
                         headers=headers)
    assert reply.status in ALLOWED, (reply.status, reply.body)
    assert isinstance(reply.body, dict) and len(reply.body) == 1
    if reply.status == 200:
        assert "data" in reply.body
    else:
        assert reply.body["error"]["code"] == reply.status
        assert isinstance(reply.body["error"]["message"], str) and reply.body["error"]["message"]
    if method == "POST" and path == "/orders" and reply.status == 200:
        fuzz_http[0].fuzz_trades = getattr(fuzz_http[0], "fuzz_trades", 0) + 1


def test_after_http_fuzzing_every_node_lives_and_the_books_balance(fuzz_http):
    cluster, http = fuzz_http
    for node in cluster.nodes.values():
        assert node.alive, f"{node.name} died"
    leader = cluster.leader()
    log = cluster.trades(leader)
    assert len(log) == getattr(cluster, "fuzz_trades", 0)
    stocks = cluster.stocks()
    for name, initial in initial_stocks().items():
        assert stocks[name][1] == initial + sum(q if s == "sell" else -q for _, _, n, q, s in log if n == name)


# --- ROUTER sockets ------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) \
    | st.floats() | st.text(max_size=10) | st.binary(max_size=10)
msgpack_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(scalars.filter(lambda k: k is not None and not isinstance(k, float)),
                                                inner, max_size=3), max_leaves=10)
message_like = st.builds(
    lambda name, version, extra: {"v": version, "msg": name, **extra},
    st.sampled_from(sorted(MESSAGES)) | st.text(max_size=8),
    st.sampled_from([PROTOCOL_VERSION] * 3 + [0, PROTOCOL_VERSION + 1, str(PROTOCOL_VERSION), None]),
    st.dictionaries(st.text(max_size=10), msgpack_values, max_size=5),
)


def _pack(value) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return b"\xc1"


frames = st.one_of(
    st.lists(st.binary(max_size=40), min_size=1, max_size=4),
    st.builds(lambda v: [b"", _pack(v)], msgpack_values),
    st.builds(lambda v: [b"", _pack(v)], message_like),
)


@pytest.fixture(scope="module")
def dealers(shared_cluster):
    ctx = zmq.Context()
    socks = {}
    for name in ("catalog", "order-1", "order-2", "order-3"):
        sock = shared_cluster.secure(ctx.socket(zmq.DEALER), name)  # past the handshake: the messages are the point
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.connect(shared_cluster.endpoint(name))
        socks[name] = sock
    yield socks
    for sock in socks.values():
        sock.close(linger=0)
    ctx.term()


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(["catalog", "order-1", "order-2", "order-3"]), message=frames)
def test_random_frames_never_crash_a_node(dealers, target, message):
    sock = dealers[target]
    sock.send_multipart(message)
    while sock.poll(0):
        reply = msgpack.unpackb(sock.recv_multipart()[-1])
        assert reply["v"] == PROTOCOL_VERSION
        assert reply["msg"] in ("error", "stock", "order", "trade_done", "fenced", "trades_applied")


def test_after_frame_fuzzing_every_node_lives_and_state_is_consistent(shared_cluster, dealers):
    for sock in dealers.values():
        while sock.poll(200):
            sock.recv_multipart()
    for node in shared_cluster.nodes.values():
        assert node.alive, f"{node.name} died"
    reply = shared_cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "sell"})
    assert reply.status == 200
    leader = shared_cluster.leader()
    log = shared_cluster.trades(leader)
    assert [r[0] for r in log] == list(range(1, len(log) + 1))
    stocks = shared_cluster.stocks()
    for name, initial in initial_stocks().items():
        assert stocks[name][1] == initial + sum(q if s == "sell" else -q for _, _, n, q, s in log if n == name)
