"""The codec: every message round-trips, and every malformed frame is refused
with a :class:`RemoteProtocolError` (never a bare ``KeyError``/``TypeError``).

Round trips are parametrized over one realistic example per message class,
like flask's tests/test_json_tag.py; a message added to the protocol without
an example here fails :func:`test_every_message_has_an_example`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import codec
from common.errors import LocalProtocolError, RemoteProtocolError
from common.protocol import (
    EVENTS, MESSAGES, PROTOCOL_VERSION, AppendEntries, AppendReply, AuthRefusedEvent, AuthStatus,
    BackendStatus, BrokerStatus, CacheFlushedEvent, CacheStatus, CampaignEvent, CatalogStatus, CaughtUpEvent,
    CommittedEntries, Error, ErrorCode, FrontendStatus, GetOrder, Heartbeat, LeaderAnnouncement, LeaderBelief,
    LeaderChangedEvent, LeaderElectedEvent, LogEntry, Lookup, Message, NodeEvent, NodeKind, OrderInfo, PeerHello,
    PlaceTrade, ReadCommitted, ReplicaRole, ReplicaStatus, SocketEvent, StartedEvent, StorageEvent, SteppedDownEvent,
    StockChanged, StockChanges, StockInfo, StockRow, StoppingEvent, Topic, TradeDone, TradeRecord, TradeStatus,
    VoteReply, VoteRequest,
)

STOCK = StockInfo(name="GameStart", price=15.99, quantity=97, volume=3, version=88, index=89)
RECORD = TradeRecord(request_id="5f1c0e2a9b7d4c38a1e6f0b2c3d4e5f6", name="FishCo", quantity=2, side="sell", txn=41)
REFUSAL = TradeRecord(request_id="req-2", name="FishCo", quantity=900, side="buy", status=TradeStatus.NOT_ENOUGH_STOCK)
GENESIS = LogEntry(index=1, term=1, genesis=[StockRow("GameStart", 15.99, 100, 0), StockRow("FishCo", 24.5, 3, 9)])
FEED = CommittedEntries(entries=[GENESIS, LogEntry(index=2, term=1, trade=RECORD),
                                 LogEntry(index=3, term=1, trade=REFUSAL)], commit=90, leader=3)
APPEND = AppendEntries(term=7, leader=3, prev_index=87, prev_term=6, entries=[
    LogEntry(index=88, term=7, trade=RECORD), LogEntry(index=89, term=7),
], commit=87, probe=311)
REPLICA = ReplicaStatus(id=3, role=ReplicaRole.LEADER, term=7, leader=3, commit=87, last_index=89,
                        recovering=False, down=[1, 2], ready=True, queued=4, awaiting=2, next_txn=42,
                        last_txn=41, trades=120, reads=7, bad_requests=1, dropped_sends=3, applied=87, lookups=12,
                        auth=AuthStatus(curve=True, refused=2, failed_handshakes=5))
FOLLOWER = ReplicaStatus(id=1, role=ReplicaRole.FOLLOWER, term=7, commit=80, last_index=85, recovering=True,
                         down=[], ready=False, queued=0, awaiting=0, next_txn=0, last_txn=40, trades=0, reads=0,
                         bad_requests=0, dropped_sends=0)
CATALOG = CatalogStatus(applied=1021, commit=1030, lookups=530, trades=120, bad_requests=0, behind=4, source=3,
                        auth=AuthStatus(curve=True, refused=0, failed_handshakes=0))
BROKER = BrokerStatus(auth=AuthStatus(curve=False, refused=0, failed_handshakes=0))
CACHE = CacheStatus(size=10, capacity=10, streaming=True, hits=412, misses=90, bypassed=5, installs=95,
                    stale_refused=1, invalidations=64, evictions=85, flushes=2, hit_rate=0.8207, stream_seq=1021)
FRONTEND = FrontendStatus(node="frontend", cache=CACHE, leader=LeaderBelief(leader=3, epoch=7),
                          backend=BackendStatus(catalog_calls=95, order_calls=120, retries=2, unavailable=0,
                                                replica_lookups=7),
                          heard={"broker": 0.012, "catalog": 0.05, "order-3": 0.1})

EXAMPLES: list[Message] = [
    Error(code=ErrorCode.BAD_REQUEST, message="quantity must be at most 1000000"),
    Error(code=ErrorCode.NOT_LEADER, message="order replica 2 does not lead", leader=3, epoch=7),
    Error(code=ErrorCode.BEHIND, message="the catalog has applied the log up to 80 of 90", index=80),
    Lookup(name="GameStart"),
    Lookup(name="GameStart", min_index=88),
    STOCK,
    PlaceTrade(request_id="Idem-Key_01", name="GameStart", quantity=1_000_000, side="buy"),
    PlaceTrade(request_id="k", name="GameStart", quantity=1, side="sell", deadline_ms=1_796_000_000_000),
    TradeDone(txn=41, name="GameStart", quantity=3, side="buy", index=88, stock=STOCK),
    TradeDone(txn=0, name="GameStart", quantity=3, side="buy"),
    ReadCommitted(after=87, limit=1000, wait_ms=300),
    FEED,
    CommittedEntries(entries=[], commit=0),
    REFUSAL,
    StockRow("GameStart", 15.99, 100, 0),
    GENESIS,
    GetOrder(txn=41),
    OrderInfo(txn=41, name="GameStart", quantity=3, side="buy"),
    RECORD,
    LogEntry(index=88, term=7, trade=RECORD),
    LogEntry(index=89, term=7),
    VoteRequest(term=8, candidate=3, last_index=89, last_term=7, pre_vote=True),
    VoteReply(term=8, voter=1, granted=False, pre_vote=True, log_ahead=True),
    APPEND,
    AppendEntries(term=7, leader=3, prev_index=89, prev_term=7, entries=[], commit=89),
    AppendReply(term=7, follower=1, success=True, match_index=89, hint=89, probe=311),
    PeerHello(replica=2, term=7, blank=True),
    AppendReply(term=7, follower=2, success=False, match_index=0, hint=40),
    REPLICA,
    FOLLOWER,
    CATALOG,
    AuthStatus(curve=True, refused=3, failed_handshakes=12),
    BROKER,
    CACHE,
    CacheStatus(size=0, capacity=10, streaming=False, hits=0, misses=0, bypassed=3, installs=0, stale_refused=0,
                invalidations=0, evictions=0, flushes=0, hit_rate=0.0),
    LeaderBelief(leader=None, epoch=0),
    BackendStatus(catalog_calls=95, order_calls=120, retries=2, unavailable=0),
    FRONTEND,
    FrontendStatus(node="frontend-2", leader=LeaderBelief(epoch=0), backend=BackendStatus(0, 0, 0, 0), heard={},
                   curve=False),
    Heartbeat(node="order-3", incarnation="2c7e920eb828", seq=17, interval_ms=100, kind=NodeKind.REPLICA,
              replica=REPLICA),
    Heartbeat(node="catalog", incarnation="a1b2c3d4e5f6", seq=9, interval_ms=100, kind=NodeKind.CATALOG,
              catalog=CATALOG),
    Heartbeat(node="frontend", incarnation="0f1e2d3c4b5a", seq=3, interval_ms=100, kind=NodeKind.FRONTEND,
              frontend=FRONTEND),
    Heartbeat(node="broker", incarnation="df447e029133", seq=1, interval_ms=100, kind=NodeKind.BROKER),
    Heartbeat(node="broker", incarnation="df447e029133", seq=2, interval_ms=100, kind=NodeKind.BROKER,
              broker=BrokerStatus(auth=AuthStatus(curve=True, refused=1, failed_handshakes=0))),
    LeaderAnnouncement(leader=3, epoch=7, endpoint="tcp://127.0.0.1:5563"),
    LeaderAnnouncement(leader=3, epoch=7, endpoint="tcp://127.0.0.1:5563", commit=90),
    StockChanged(name="GameStart", price=15.99, quantity=97, version=88),
    StockChanges(prev=87, index=90, changes=[StockChanged(name="GameStart", price=15.99, quantity=97, version=88),
                                             StockChanged(name="FishCo", price=24.5, quantity=3, version=90)]),
    StockChanges(prev=90, index=91, changes=[]),
    StartedEvent(node="catalog", applied=1021),
    StartedEvent(node="order-2", last_index=90, term=7),
    StartedEvent(node="frontend", cache=False),
    StartedEvent(node="broker"),
    StoppingEvent(node="catalog"),
    SocketEvent(node="order-1", socket="peer-3", event="disconnected", endpoint="tcp://127.0.0.1:5563"),
    LeaderElectedEvent(node="order-2", leader=2, epoch=8, last_index=90),
    SteppedDownEvent(node="order-3", epoch=8),
    LeaderChangedEvent(node="order-1", leader=2, epoch=8),
    LeaderChangedEvent(node="order-1", epoch=9),
    CaughtUpEvent(node="order-3", index=90, leader=2),
    CampaignEvent(node="order-1", epoch=9, pre_vote=True, last_index=90),
    CacheFlushedEvent(node="frontend", reason="gap: change 12 after 10", flushes=3),
    StorageEvent(node="order-2", state="full", detail="storage full: cannot write data/order-2.sqlite3 (12 KiB free)"),
    AuthRefusedEvent(node="catalog", socket="router", address="10.0.0.9", key="rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
                     reason="key not among the cluster's public keys"),
    AuthRefusedEvent(node="broker", socket="xsub", address="127.0.0.1", key="Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
                     reason="key not among the cluster's public keys", repeated=4),
]


def _id(msg: Message) -> str:
    return msg.MSG


def _frame(**body) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def _valid(msg: Message) -> dict:
    """The decoded map of an encoded message, for tampering with."""
    return msgpack.unpackb(codec.encode(msg), raw=False)


# --- round trips ---------------------------------------------------------------


def test_every_message_has_an_example():
    assert {type(m) for m in EXAMPLES} == set(MESSAGES.values())


@pytest.mark.parametrize("msg", EXAMPLES, ids=_id)
def test_round_trip(msg):
    frame = codec.encode(msg)
    assert isinstance(frame, bytes)
    back = codec.decode(frame)
    assert type(back) is type(msg)
    assert back == msg


@pytest.mark.parametrize("msg", EXAMPLES, ids=_id)
def test_frame_is_a_versioned_map_named_by_msg(msg):
    body = msgpack.unpackb(codec.encode(msg), raw=False)
    assert body["v"] == PROTOCOL_VERSION
    assert body["msg"] == msg.MSG
    # Every field is there but those that hold their default (the reader's default for an absent key).
    present = {f.name for f in dataclasses.fields(msg)
               if f.default is dataclasses.MISSING or getattr(msg, f.name) != f.default}
    assert set(body) == {"v", "msg", *present}


def test_a_field_that_holds_its_default_is_left_out_and_read_back():
    body = msgpack.unpackb(codec.encode(PlaceTrade("r1", "FishCo", 1, "buy")), raw=False)
    assert "trace" not in body
    assert codec.decode(codec.encode(PlaceTrade("r1", "FishCo", 1, "buy"))).trace is False
    traced = msgpack.unpackb(codec.encode(PlaceTrade("r1", "FishCo", 1, "buy", trace=True)), raw=False)
    assert traced["trace"] is True


def test_nested_messages_are_plain_maps_without_version_or_name():
    body = _valid(FEED)
    assert body["entries"][1]["trade"] == {"request_id": "5f1c0e2a9b7d4c38a1e6f0b2c3d4e5f6", "name": "FishCo",
                                           "quantity": 2, "side": "sell", "txn": 41}
    assert body["entries"][2]["trade"]["status"] == "not_enough_stock"
    body = _valid(TradeDone(txn=1, name="A", quantity=1, side="buy", stock=STOCK))
    assert "v" not in body["stock"] and "msg" not in body["stock"]


def test_nested_round_trip_keeps_the_nested_types():
    msg = codec.decode(codec.encode(FEED))
    assert isinstance(msg.entries[0].genesis[0], StockRow) and msg.entries[0].trade is None
    assert msg.entries[2].trade.status is TradeStatus.NOT_ENOUGH_STOCK and msg.entries[2].trade.txn is None
    done = codec.decode(codec.encode(TradeDone(txn=1, name="A", quantity=1, side="buy", stock=STOCK)))
    assert isinstance(done.stock, StockInfo)
    entries = codec.decode(codec.encode(APPEND)).entries
    assert isinstance(entries[0].trade, TradeRecord) and entries[1].trade is None
    frontend = codec.decode(codec.encode(Heartbeat("frontend", "i", 1, 100, NodeKind.FRONTEND,
                                                   frontend=FRONTEND))).frontend
    assert isinstance(frontend.cache, CacheStatus) and isinstance(frontend.leader, LeaderBelief)
    assert isinstance(frontend.backend, BackendStatus) and frontend.heard == FRONTEND.heard


def test_enum_fields_decode_to_their_members():
    beat = codec.decode(codec.encode(Heartbeat("order-3", "i", 1, 100, NodeKind.REPLICA, replica=REPLICA)))
    assert beat.kind is NodeKind.REPLICA
    assert beat.replica.role is ReplicaRole.LEADER
    body = _valid(Heartbeat("broker", "i", 1, 100, NodeKind.BROKER))
    assert body["kind"] == "broker" and type(body["kind"]) is str


def test_each_event_kind_is_a_message_named_by_its_kind():
    assert [cls.MSG for cls in EVENTS] == ["started", "stopping", "socket", "leader_elected", "stepped_down",
                                           "leader_changed", "caught_up", "campaign", "cache_flushed", "auth_refused",
                                           "storage"]
    assert all(issubclass(cls, NodeEvent) and MESSAGES[cls.MSG] is cls for cls in EVENTS)
    body = _valid(CampaignEvent(node="order-1", epoch=9, pre_vote=True, last_index=90))
    assert body == {"v": PROTOCOL_VERSION, "msg": "campaign", "node": "order-1", "epoch": 9, "pre_vote": True,
                    "last_index": 90}
    with pytest.raises(LocalProtocolError):
        codec.encode(NodeEvent(node="order-1"))  # the base class is no message


def test_an_events_details_are_its_fields_that_are_set():
    assert StartedEvent(node="catalog", applied=4).details() == {"applied": 4}
    assert LeaderChangedEvent(node="order-1", epoch=3).details() == {"epoch": 3}
    assert StoppingEvent(node="broker").details() == {}


def test_the_values_of_a_typed_map_are_checked_and_an_int_reads_as_a_float():
    body = _valid(FRONTEND)
    body["heard"] = {"broker": 0, "catalog": 0.5}
    heard = codec.decode(msgpack.packb(body)).heard
    assert heard == {"broker": 0.0, "catalog": 0.5} and type(heard["broker"]) is float


def test_an_int_price_decodes_as_a_float():
    body = _valid(STOCK)
    body["price"] = 16
    msg = codec.decode(msgpack.packb(body))
    assert msg.price == 16.0 and type(msg.price) is float


def test_optional_fields_may_be_absent_or_nil():
    v = PROTOCOL_VERSION
    assert codec.decode(_frame(v=v, msg="error", code="bad_request", message="x")) == Error("bad_request", "x")
    msg = codec.decode(_frame(v=v, msg="error", code="not_leader", message="x", leader=None, epoch=None))
    assert msg.leader is None and msg.epoch is None
    hb = codec.decode(_frame(v=v, msg="heartbeat", node="broker", incarnation="i", seq=1, interval_ms=100,
                             kind="broker"))
    assert hb.replica is None and hb.catalog is None and hb.frontend is None
    ae = codec.decode(_frame(v=v, msg="append_entries", term=1, leader=1, prev_index=0, prev_term=0,
                             entries=[], commit=0))
    assert ae.probe == 0


def test_unknown_extra_keys_are_ignored():
    body = _valid(Lookup("GameStart"))
    body["future_field"] = {"anything": [1, 2]}
    assert codec.decode(msgpack.packb(body)) == Lookup("GameStart")
    nested = _valid(FEED)
    nested["entries"][1]["trade"]["extra"] = True
    nested["entries"][1]["trade"]["v"] = 99  # a nested map's "v" is just an unknown key
    assert codec.decode(msgpack.packb(nested)) == FEED


def test_encoding_a_message_outside_the_protocol_is_a_local_error():
    @dataclass(frozen=True, slots=True)
    class Bogus(Message):
        MSG = "bogus"
        x: int

    with pytest.raises(LocalProtocolError):
        codec.encode(Bogus(1))
    with pytest.raises(LocalProtocolError):
        codec.encode(Message())


@pytest.mark.parametrize("thing", [{"msg": "lookup", "name": "GameStart"}, "lookup", None, Lookup],
                         ids=["dict", "str", "None", "class"])
def test_encoding_a_non_message_is_a_local_error(thing):
    with pytest.raises(LocalProtocolError):
        codec.encode(thing)


def test_a_class_borrowing_a_protocol_name_is_not_a_protocol_message():
    @dataclass(frozen=True, slots=True)
    class FakeLookup(Message):
        MSG = "lookup"
        name: str

    with pytest.raises(LocalProtocolError):
        codec.encode(FakeLookup("GameStart"))


# --- decode errors ---------------------------------------------------------------

NOT_MSGPACK = [
    b"",
    b"\xc1",                      # the one byte msgpack never uses
    b"\x92\x01",                  # an array of 2 with one element: truncated
    msgpack.packb({"v": 1}) + b"\x00",  # extra bytes after the map
    b"GET / HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("frame", NOT_MSGPACK)
def test_not_msgpack(frame):
    with pytest.raises(RemoteProtocolError):
        codec.decode(frame)


@pytest.mark.parametrize("value", [1, "lookup", None, True, 1.5, [1, "lookup"], b"bytes"])
def test_not_a_map(value):
    with pytest.raises(RemoteProtocolError, match="must be a msgpack map"):
        codec.decode(msgpack.packb(value, use_bin_type=True))


def test_a_map_with_non_string_keys_is_refused():
    with pytest.raises(RemoteProtocolError):
        codec.decode(msgpack.packb({1: 1, "msg": "lookup", "name": "x"}))


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, -1, str(PROTOCOL_VERSION),
                                     float(PROTOCOL_VERSION), None, [PROTOCOL_VERSION], 2**64 - 1], ids=repr)
def test_wrong_version(version):
    body = _valid(Lookup("GameStart"))
    body["v"] = version
    with pytest.raises(RemoteProtocolError, match="unsupported protocol version"):
        codec.decode(msgpack.packb(body))


def test_missing_version():
    with pytest.raises(RemoteProtocolError, match="unsupported protocol version None"):
        codec.decode(_frame(msg="lookup", name="GameStart"))


@pytest.mark.parametrize("name", ["nope", "", "Lookup", None, 5, ["lookup"], "trade_item "], ids=repr)
def test_unknown_msg(name):
    with pytest.raises(RemoteProtocolError, match="unknown message"):
        codec.decode(_frame(v=PROTOCOL_VERSION, msg=name, name="GameStart"))


def test_missing_msg():
    with pytest.raises(RemoteProtocolError, match="unknown message"):
        codec.decode(_frame(v=PROTOCOL_VERSION, name="GameStart"))


def _required(cls: type[Message]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


@pytest.mark.parametrize("msg", EXAMPLES, ids=_id)
def test_missing_required_field(msg):
    for name in sorted(_required(type(msg))):
        body = _valid(msg)
        del body[name]
        with pytest.raises(RemoteProtocolError, match=f"lacks the field '{name}'"):
            codec.decode(msgpack.packb(body, use_bin_type=True))


def test_required_fields_are_the_ones_without_defaults():
    assert _required(Error) == {"code", "message"}
    assert _required(TradeRecord) == {"request_id", "name", "quantity", "side"}
    assert _required(Heartbeat) == {"node", "incarnation", "seq", "interval_ms", "kind"}
    assert "leader" not in _required(ReplicaStatus) and "applied" not in _required(ReplicaStatus)
    assert _required(AppendEntries) == {"term", "leader", "prev_index", "prev_term", "entries", "commit"}


# (message, field, wrong value, words the error must contain)
WRONG_TYPES = [
    (GetOrder(41), "txn", True, "get_order.txn must"),                     # bool where int
    (GetOrder(41), "txn", 41.0, "must be an integer"),                 # float where int
    (GetOrder(41), "txn", "41", "must be an integer"),
    (GetOrder(41), "txn", None, "must be an integer"),                 # nil for a required int
    (PlaceTrade("r", "GameStart", 1, "buy"), "quantity", 1.5, "quantity must be an integer"),
    (PlaceTrade("r", "GameStart", 1, "buy"), "name", b"GameStart", "name must be a string"),
    (PlaceTrade("r", "GameStart", 1, "buy"), "request_id", 7, "request_id must be a string"),
    (StockInfo("GameStart", 1.0, 1, 1, 1, 1), "price", True, "price must be a number"),  # bool where float
    (StockInfo("GameStart", 1.0, 1, 1, 1, 1), "price", "15.99", "price must be a number"),
    (VoteRequest(1, 1, 0, 0, True), "pre_vote", 1, "pre_vote must be a boolean"),      # int where bool
    (AppendReply(1, 1, True, 0, 0), "blank", None, "blank must be a boolean"),
    (AppendEntries(1, 1, 0, 0, [], 0), "entries", "not a list", "entries must be a list"),  # str where list
    (CommittedEntries([], 0), "entries", {"0": {}}, "entries must be a list"),
    (CommittedEntries([], 0), "entries", [[1, 1]], "entries[0] must be a map"),
    (CommittedEntries([], 0), "entries", [{"index": "1", "term": 1}],
     "entries[0].index must be an integer"),                                          # nested wrong
    (CommittedEntries([], 0), "entries", [{"term": 1}], "lacks the field 'index'"),   # nested missing
    (TradeDone(1, "A", 1, "buy"), "stock", "GameStart", "stock must be a map"),
    (TradeDone(1, "A", 1, "buy"), "stock", {"name": "n", "price": 1.0, "quantity": 1, "volume": 1, "version": 1,
                                            "index": True}, "stock.index must be an integer"),
    (AppendEntries(1, 1, 0, 0, [], 0), "entries", [{"index": 1, "term": 1, "trade": {"txn": 0}}],
     "lacks the field"),                                                              # doubly nested
    (AppendEntries(1, 1, 0, 0, [], 0), "entries", [{"index": 1, "term": 1, "trade": {
        "request_id": "r", "name": "A", "quantity": 1, "side": "buy", "status": "maybe"}}],
     "status must be one of ok"),                                                     # a nested enum
    (AppendEntries(1, 1, 0, 0, [], 0), "entries", [{"index": 1, "term": 1, "genesis": [{"name": "A"}]}],
     "lacks the field"),
    (Heartbeat("n", "i", 1, 100, NodeKind.BROKER), "kind", "router", "kind must be one of broker, catalog"),
    (Heartbeat("n", "i", 1, 100, NodeKind.BROKER), "kind", 1, "heartbeat.kind must be one of"),
    (Heartbeat("n", "i", 1, 100, NodeKind.BROKER), "kind", ["broker"], "heartbeat.kind must be one of"),
    (Heartbeat("n", "i", 1, 100, NodeKind.BROKER), "replica", [1, 2], "replica must be a map"),
    (Heartbeat("n", "i", 1, 100, NodeKind.REPLICA, replica=REPLICA), "replica",
     {**dataclasses.asdict(REPLICA), "role": "boss"}, "replica.role must be one of follower"),
    (Heartbeat("n", "i", 1, 100, NodeKind.REPLICA, replica=REPLICA), "replica",
     {**dataclasses.asdict(REPLICA), "down": "1,2"}, "replica.down must be a list"),
    (Heartbeat("n", "i", 1, 100, NodeKind.REPLICA, replica=REPLICA), "replica",
     {**dataclasses.asdict(REPLICA), "down": [1, "2"]}, "replica.down[1] must be an integer"),
    (Heartbeat("n", "i", 1, 100, NodeKind.CATALOG, catalog=CATALOG), "catalog",
     {**dataclasses.asdict(CATALOG), "applied": "10"}, "catalog.applied must be an integer"),
    (FRONTEND, "heard", [1, 2], "heard must be a map"),
    (FRONTEND, "heard", {b"broker": 0.1}, "heard must be a map with string keys"),
    (FRONTEND, "heard", {"broker": "0.1"}, "heard['broker'] must be a number"),
    (FRONTEND, "cache", {**dataclasses.asdict(CACHE), "streaming": 1}, "cache.streaming must be a boolean"),
    (FRONTEND, "leader", {"epoch": 1, "leader": "3"}, "leader.leader must be an integer"),
    (SocketEvent("n", "bus", "connected", "tcp://x"), "event", 5, "socket.event must be a string"),
    (CampaignEvent("n", 1, True, 0), "pre_vote", 1, "campaign.pre_vote must be a boolean"),
    (LeaderChangedEvent("n", 1), "leader", "2", "leader_changed.leader must be an integer"),
    (CacheFlushedEvent("n", "gap", 1), "flushes", None, "cache_flushed.flushes must be an integer"),
    (Error("bad_request", "x"), "leader", "3", "leader must be an integer"),          # optional, wrong
]


@pytest.mark.parametrize("msg,field,value,words", WRONG_TYPES,
                         ids=[f"{m.MSG}.{f}={v!r}"[:60] for m, f, v, _ in WRONG_TYPES])
def test_wrong_field_type(msg, field, value, words):
    body = _valid(msg)
    body[field] = value
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode(msgpack.packb(body, use_bin_type=True))
    assert words in str(info.value)


@pytest.mark.parametrize("value", [-(2**63), -1, 0, 2**63 - 1], ids=repr)
def test_integers_of_64_signed_bits_are_accepted(value):
    body = _valid(GetOrder(0))
    body["txn"] = value
    assert codec.decode(msgpack.packb(body)).txn == value


@pytest.mark.parametrize("msg,field", [
    (GetOrder(0), "txn"), (ReadCommitted(0, 1), "after"), (Lookup("A"), "min_index"),
    (AppendEntries(1, 1, 0, 0, [], 0), "term"), (VoteRequest(1, 1, 0, 0, False), "term"),
], ids=lambda v: v if isinstance(v, str) else v.MSG)
@pytest.mark.parametrize("value", [2**63, 2**64 - 1], ids=["2**63", "2**64-1"])
def test_integers_beyond_64_signed_bits_are_refused(msg, field, value):
    body = _valid(msg)
    body[field] = value
    with pytest.raises(RemoteProtocolError, match="signed 64-bit"):
        codec.decode(msgpack.packb(body))


def test_nested_integers_beyond_64_signed_bits_are_refused():
    body = _valid(APPEND)
    body["entries"][0]["trade"]["txn"] = 2**64 - 1
    with pytest.raises(RemoteProtocolError, match=r"entries\[0\]\.trade\.txn must fit"):
        codec.decode(msgpack.packb(body))


def test_a_dataclass_built_with_wrong_types_encodes_but_does_not_decode():
    # encode() does not check types (it is our own code); the peer's decode() does.
    frame = codec.encode(Lookup(name=5))  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="Lookup.name|lookup.name"):
        codec.decode(frame)


# --- the bus -----------------------------------------------------------------------


def test_encode_pub_puts_the_topic_first():
    msg = StockChanged(name="GameStart", price=15.99, quantity=97, version=4)
    frames = codec.encode_pub(Topic.STOCK, msg)
    assert frames == [b"stock", codec.encode(msg)]
    assert codec.decode_pub(frames) == (Topic.STOCK, msg)


@pytest.mark.parametrize("topic", list(Topic), ids=lambda t: t.name)
def test_every_topic_round_trips(topic):
    msg = Heartbeat(node="catalog", incarnation="abc", seq=3, interval_ms=100, kind=NodeKind.CATALOG, catalog=CATALOG)
    assert codec.decode_pub(codec.encode_pub(topic, msg)) == (topic, msg)


@pytest.mark.parametrize("frames", [
    [],
    [b"hb"],
    [b"hb", codec.encode(Lookup("x")), b"extra"],
], ids=["no frame", "topic only", "three frames"])
def test_decode_pub_wrong_frame_count(frames):
    with pytest.raises(RemoteProtocolError, match="2 frames"):
        codec.decode_pub(frames)


@pytest.mark.parametrize("topic", [b"", b"HB", b"hbx", b"stocks", b"h", b"\xff" * 100])
def test_decode_pub_unknown_topic(topic):
    with pytest.raises(RemoteProtocolError, match="unknown topic"):
        codec.decode_pub([topic, codec.encode(Lookup("x"))])


def test_decode_pub_garbage_body():
    with pytest.raises(RemoteProtocolError):
        codec.decode_pub([b"hb", b"\xc1"])


def test_decode_pub_does_not_check_that_the_topic_fits_the_message():
    # Receivers dispatch on the message class, not the topic (see PROTOCOL.md).
    msg = Lookup("GameStart")
    assert codec.decode_pub([b"stock", codec.encode(msg)]) == (Topic.STOCK, msg)


# --- ROUTER envelopes ---------------------------------------------------------------


@pytest.mark.parametrize("frames,envelope,body", [
    ([b"id", b"", b"body"], [b"id", b""], b"body"),
    ([b"\x00k\x8bEg", b"", b"body"], [b"\x00k\x8bEg", b""], b"body"),
    ([b"proxy", b"id", b"", b"body"], [b"proxy", b"id", b""], b"body"),  # several hops
    ([b"id", b"", b""], [b"id", b""], b""),                              # empty body: decode refuses it
], ids=["one hop", "binary identity", "two hops", "empty body"])
def test_split_envelope(frames, envelope, body):
    assert codec.split_envelope(frames) == (envelope, body)


@pytest.mark.parametrize("frames", [
    [],
    [b""],
    [b"body"],
    [b"id", b"body"],                 # a DEALER that forgot the delimiter
    [b"", b"body"],                   # no identity before the delimiter
    [b"id", b"", b"body", b"more"],   # the delimiter is not second to last
    [b"id", b"", b"", b"body"],       # two delimiters
    [b"id", b"body", b""],            # delimiter last
], ids=["nothing", "delimiter only", "body only", "no delimiter", "no identity", "frames after body",
        "two delimiters", "delimiter last"])
def test_split_envelope_refuses(frames):
    with pytest.raises(RemoteProtocolError, match="envelope"):
        codec.split_envelope(frames)


# --- nothing but RemoteProtocolError, whatever the bytes ----------------------------------

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats() | st.text(max_size=12) | st.binary(max_size=12))
msgpack_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12) | st.binary(max_size=4) | st.integers(-(2**63), 2**64 - 1),
                      inner, max_size=4),
    max_leaves=16,
)
field_names = st.sampled_from(sorted({f.name for cls in MESSAGES.values() for f in dataclasses.fields(cls)}))
message_like = st.builds(
    lambda name, version, fields: {**fields, "v": version, "msg": name},
    st.sampled_from(sorted(MESSAGES)),
    st.sampled_from([PROTOCOL_VERSION] * 3 + [0, PROTOCOL_VERSION + 1, True, float(PROTOCOL_VERSION), "1"]),
    st.dictionaries(field_names, msgpack_values, max_size=8),
)


def _decode_or_refuse(frame: bytes) -> None:
    try:
        msg = codec.decode(frame)
    except RemoteProtocolError:
        return
    assert isinstance(msg, Message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(frame):
    _decode_or_refuse(frame)


@settings(max_examples=200, deadline=None)
@given(msgpack_values)
def test_random_msgpack_values_never_raise_anything_else(value):
    _decode_or_refuse(msgpack.packb(value, use_bin_type=True, strict_types=False))


@settings(max_examples=150, deadline=None)
@given(message_like)
def test_random_message_like_maps_never_raise_anything_else(body):
    _decode_or_refuse(msgpack.packb(body, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(EXAMPLES), st.data())
def test_a_valid_message_with_one_field_replaced_never_raises_anything_else(msg, data):
    body = _valid(msg)
    field = data.draw(st.sampled_from(sorted(body)))
    body[field] = data.draw(msgpack_values)
    _decode_or_refuse(msgpack.packb(body, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=5))
def test_random_frames_never_raise_anything_else_on_the_bus_or_a_router(frames):
    for step in (codec.decode_pub, codec.split_envelope):
        try:
            step(frames)
        except RemoteProtocolError:
            pass
