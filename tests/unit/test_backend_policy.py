"""The frontend's retry, leader-following and lookup policy
(frontend/backend.py), over scripted fake channels and a fake clock: no
sockets, no waiting. Each fake backend answers from a script (a reply, or an
error to raise), records what it was asked, and moves the clock on as the
real channel would take time (a timeout takes the whole timeout)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import frontend.backend as backend_module
from common import config as configuration
from common.errors import NotLeader, PeerUnavailable, RemoteError, RemoteProtocolError, RpcTimeout
from common.protocol import ErrorCode, Lookup, OrderInfo, PlaceTrade, StockInfo, TradeDone
from frontend.backend import CATALOG_REST_S, Backend, Unavailable
from frontend.leader import LeaderTracker

REPO = Path(__file__).resolve().parents[2]
DONE = TradeDone(txn=7, name="FishCo", quantity=1, side="buy")
WALL_S = 1_700_000_000.0  # Unix time when the fake clock reads 0
ANSWER_S = 0.001  # how long a fake backend takes to answer


def stock(version: int, quantity: int = 5, index: int | None = None) -> StockInfo:
    """FishCo at ``version``, as of log index ``index`` (default: the version)."""
    return StockInfo("FishCo", 1.0, quantity, 0, version, version if index is None else index)


def behind(applied: int) -> RemoteError:
    return RemoteError(ErrorCode.BEHIND, f"applied the log up to {applied} and has not yet reached it")


class FakeClock:
    """Stands in for the ``time`` module inside frontend.backend: sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return WALL_S + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeChannel:
    """One backend: answers each request with the next item of its script
    (no script left: no connection). A timeout takes the whole timeout, as
    on a real channel; anything else, a millisecond (a missing connection
    too: the real channel may wait ``connect_s`` for it, which these tests
    of the order of attempts leave out)."""

    def __init__(self, label: str, log: list, clock: FakeClock) -> None:
        self.label = label
        self.script: list = []
        self.log = log
        self.clock = clock

    def request(self, msg, timeout_s, *, cancel=None, connect_s=None):
        self.log.append((self.label, msg))
        outcome = self.script.pop(0) if self.script else PeerUnavailable(f"{self.label} is not there")
        self.clock.sleep(timeout_s if isinstance(outcome, RpcTimeout) else ANSWER_S)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(backend_module, "time", fake)
    return fake


@pytest.fixture
def make_backend(clock):
    """``make_backend(catalog_alive=None)``: a Backend over fake channels, without a cache."""
    config = configuration.load(REPO / "config.toml", [
        "timeouts.request_ms=50", "timeouts.trade_deadline_ms=300", "timeouts.lookup_attempts=2",
        "security.curve=false"])

    def make(catalog_alive=None) -> Backend:
        calls: list = []
        channels: dict[str, FakeChannel] = {}

        def open_channel(endpoint: str, label: str) -> FakeChannel:
            channels[label] = FakeChannel(label, calls, clock)
            return channels[label]

        tracker = LeaderTracker([r.id for r in config.orders])
        made = Backend(config, None, None, tracker, threading.Lock(), channel=open_channel,
                       catalog_alive=catalog_alive)
        made.calls, made.channels = calls, channels
        return made

    return make


@pytest.fixture
def backend(make_backend) -> Backend:
    return make_backend()


def asked(backend) -> list[str]:
    return [label for label, _ in backend.calls]


def lookups(backend) -> list[tuple[str, int]]:
    """Who was asked for a stock, and the least index each was asked for."""
    return [(label, msg.min_index) for label, msg in backend.calls if isinstance(msg, Lookup)]


def test_a_trade_goes_to_the_announced_leader(backend):
    backend.tracker.announce(2, 5)
    backend.channels["order-2"].script = [DONE]
    assert backend.trade("k1", "FishCo", 1, "buy") == DONE
    assert asked(backend) == ["order-2"]


def test_not_leader_with_a_hint_sends_the_same_request_to_the_hinted_replica(backend):
    backend.tracker.announce(3, 5)
    backend.channels["order-3"].script = [NotLeader("order replica 3 does not lead", leader_hint=1, epoch=6)]
    backend.channels["order-1"].script = [DONE]
    backend.trade("k1", "FishCo", 1, "buy")
    assert asked(backend) == ["order-3", "order-1"]
    first, second = (msg for _, msg in backend.calls)
    assert first == second  # same request id, same deadline: never applied twice
    assert first == PlaceTrade("k1", "FishCo", 1, "buy", deadline_ms=int((WALL_S + 0.3) * 1000))
    assert (backend.tracker.leader, backend.tracker.epoch) == (1, 6)


def test_a_dead_leader_is_forgotten_and_replicas_are_tried_from_the_highest_id_down(backend):
    backend.tracker.announce(2, 5)
    backend.channels["order-3"].script = [NotLeader("order replica 3 does not lead", None, 5)]
    backend.channels["order-1"].script = [DONE]
    backend.trade("k1", "FishCo", 1, "buy")  # order-2's channel has no script: no connection
    assert asked(backend)[:2] == ["order-2", "order-3"] and asked(backend)[-1] == "order-1"
    assert backend.counters.retries >= 2


def test_a_trade_that_timed_out_everywhere_is_unknown_and_says_to_retry_with_the_key(backend):
    for channel in backend.channels.values():
        channel.script = [RpcTimeout("no reply")] * 50
    with pytest.raises(Unavailable) as info:
        backend.trade("k1", "FishCo", 1, "buy")
    assert info.value.outcome_unknown and "same Idempotency-Key" in info.value.message
    assert len({msg for _, msg in backend.calls}) == 1 and backend.calls[0][1].request_id == "k1"
    assert backend.counters.timeouts >= 2


def test_a_trade_never_sent_is_not_unknown(backend):
    with pytest.raises(Unavailable) as info:
        backend.trade("k1", "FishCo", 1, "buy")  # no replica takes the connection
    assert not info.value.outcome_unknown and "try again" in info.value.message


def test_a_trade_answered_only_with_undecodable_replies_is_unknown(backend):
    backend.tracker.announce(3, 5)
    backend.channels["order-3"].script = [RemoteProtocolError("reply is not msgpack")] * 50
    with pytest.raises(Unavailable) as info:
        backend.trade("k1", "FishCo", 1, "buy")
    assert info.value.outcome_unknown and "same Idempotency-Key" in info.value.message


def test_a_full_disk_is_a_503_at_once_that_names_it(backend):
    backend.tracker.announce(3, 5)
    problem = "catalog: storage full: cannot write data/catalog.sqlite3 (40 KiB free)"
    backend.channels["order-3"].script = [RemoteError(ErrorCode.STORAGE, problem)]
    with pytest.raises(Unavailable) as info:
        backend.trade("k1", "FishCo", 1, "buy")
    assert problem in info.value.message and not info.value.outcome_unknown
    assert asked(backend) == ["order-3"]  # not retried until the deadline: nothing was carried out


def test_replicas_that_cannot_lead_for_want_of_storage_are_named_in_the_503(backend):
    for i in (1, 2, 3):
        backend.channels[f"order-{i}"].script = [
            NotLeader(f"order replica {i} does not lead (order-{i}: storage full: cannot write x)", None, 5)] * 50
    with pytest.raises(Unavailable) as info:
        backend.order(3)
    assert "storage full" in info.value.message


def test_a_trade_the_leader_got_too_late_is_a_503_at_once_and_not_unknown(backend):
    backend.tracker.announce(3, 5)
    backend.channels["order-3"].script = [RemoteError(ErrorCode.DEADLINE, "the trade's deadline passed")]
    with pytest.raises(Unavailable) as info:
        backend.trade("k1", "FishCo", 1, "buy")
    assert not info.value.outcome_unknown and "deadline passed" in info.value.message
    assert asked(backend) == ["order-3"]


# --- lookups ----------------------------------------------------------------------------


def test_a_lookup_goes_to_the_catalog_first(backend):
    backend.channels["catalog"].script = [stock(4)]
    assert backend.lookup("FishCo").version == 4
    assert lookups(backend) == [("catalog", 0)]
    assert (backend.counters.catalog_calls, backend.counters.replica_lookups) == (1, 0)


def test_a_lookup_the_catalog_answers_behind_goes_to_the_leader_and_succeeds(backend):
    backend.tracker.announce(2, 5)
    backend.channels["catalog"].script = [behind(3)]
    backend.channels["order-2"].script = [stock(7, quantity=9)]
    got = backend.lookup("FishCo")
    assert (got.quantity, got.version) == (9, 7)
    assert asked(backend) == ["catalog", "order-2"]
    assert backend.counters.replica_lookups == 1 and backend.counters.unavailable == 0


def test_a_replica_that_is_behind_too_passes_the_lookup_to_the_next(backend):
    backend.tracker.announce(2, 5)
    backend.channels["catalog"].script = [behind(3)]
    backend.channels["order-2"].script = [behind(5)]
    backend.channels["order-3"].script = [stock(7)]
    assert backend.lookup("FishCo").version == 7
    assert asked(backend) == ["catalog", "order-2", "order-3"]


def test_the_catalog_answering_behind_does_not_rest_it(backend):
    backend.tracker.announce(3, 5)
    backend.channels["catalog"].script = [behind(3), stock(8)]
    backend.channels["order-3"].script = [stock(7)]
    backend.lookup("FishCo")
    assert backend.lookup("FishCo").version == 8  # asked again at once
    assert asked(backend) == ["catalog", "order-3", "catalog"]


@pytest.mark.parametrize("failure", [RpcTimeout("no reply"), PeerUnavailable("no connection"),
                                     RemoteProtocolError("reply is not msgpack")])
def test_a_catalog_that_fails_is_skipped_for_the_rest_time(backend, clock, failure):
    backend.tracker.announce(3, 5)
    backend.channels["catalog"].script = [failure, stock(9)]
    backend.channels["order-3"].script = [stock(7), stock(7), stock(8)]
    failed_at = clock.now
    assert backend.lookup("FishCo").version == 7  # the leader answered in its stead
    assert backend.lookup("FishCo").version == 7  # straight to the leader: the catalog rests
    assert asked(backend) == ["catalog", "order-3", "order-3"]
    clock.now = failed_at + CATALOG_REST_S - 0.01
    assert backend.lookup("FishCo").version == 8
    assert asked(backend)[-1] == "order-3"
    clock.now = failed_at + CATALOG_REST_S + 0.2  # rested: asked again
    assert backend.lookup("FishCo").version == 9
    assert asked(backend)[-1] == "catalog"
    assert backend.counters.catalog_calls == 2 and backend.counters.replica_lookups == 3


def test_a_catalog_the_bus_no_longer_hears_is_skipped(make_backend):
    alive = [False]
    backend = make_backend(catalog_alive=lambda: alive[0])
    backend.tracker.announce(1, 5)
    backend.channels["order-1"].script = [stock(7)]
    assert backend.lookup("FishCo").version == 7
    assert asked(backend) == ["order-1"] and backend.counters.catalog_calls == 0
    alive[0] = True
    backend.channels["catalog"].script = [stock(7)]
    backend.lookup("FishCo")
    assert asked(backend)[-1] == "catalog"


def test_a_lookup_never_shows_a_version_older_than_one_already_shown(backend):
    backend.tracker.announce(3, 5)
    backend.channels["order-3"].script = [
        TradeDone(txn=3, name="FishCo", quantity=1, side="buy", index=7, stock=stock(7, quantity=4)),
        stock(7, quantity=4, index=7)]
    backend.trade("k1", "FishCo", 1, "buy")
    # The catalog still holds version 5: asked for entry 7 or later, it answers behind.
    backend.channels["catalog"].script = [behind(5)]
    got = backend.lookup("FishCo")
    assert (got.version, got.quantity) == (7, 4)
    assert lookups(backend) == [("catalog", 7), ("order-3", 7)]


def test_a_version_shown_by_a_lookup_is_the_floor_of_the_next_one(backend):
    backend.tracker.announce(3, 5)
    backend.channels["catalog"].script = [behind(2)]
    backend.channels["order-3"].script = [stock(6)]
    backend.lookup("FishCo")
    backend.channels["catalog"].script = [stock(6)]
    backend.lookup("FishCo")
    assert lookups(backend)[-1] == ("catalog", 6)
    backend.channels["catalog"].script = [StockInfo("BoarCo", 2.0, 1, 0, 1, 9)]
    backend.lookup("BoarCo")
    assert lookups(backend)[-1] == ("catalog", 0)  # a floor is per stock


def test_a_stock_the_catalog_does_not_know_is_not_asked_of_the_replicas(backend):
    backend.channels["catalog"].script = [RemoteError(ErrorCode.STOCK_NOT_FOUND, "stock not found")]
    with pytest.raises(RemoteError) as info:
        backend.lookup("NoSuchCo")
    assert info.value.code == ErrorCode.STOCK_NOT_FOUND and asked(backend) == ["catalog"]


def test_a_lookup_nobody_answers_is_a_503_after_lookup_attempts_request_timeouts(backend, clock):
    backend.channels["catalog"].script = [RpcTimeout("no reply")]
    for i in (1, 2, 3):
        backend.channels[f"order-{i}"].script = [RpcTimeout("no reply")] * 50
    with pytest.raises(Unavailable, match="neither the catalog nor an order replica"):
        backend.lookup("FishCo")
    spent = clock.now - 0.05  # the catalog's own timeout first
    assert spent == pytest.approx(0.05 * 2)  # request_ms x lookup_attempts for the replicas
    assert [label for label, _ in lookups(backend)] == ["catalog", "order-3", "order-2"]
    assert backend.counters.unavailable == 1


def test_a_lookup_every_replica_answers_behind_is_asked_again_until_one_catches_up(backend):
    backend.tracker.announce(3, 5)
    backend.channels["catalog"].script = [behind(1)]
    for i in (1, 2, 3):
        backend.channels[f"order-{i}"].script = [behind(1)]
    backend.channels["order-3"].script.append(stock(2))
    assert backend.lookup("FishCo").version == 2
    assert asked(backend) == ["catalog", "order-3", "order-2", "order-1", "order-3"]


# --- order reads ----------------------------------------------------------------------

ORDER = OrderInfo(txn=7, name="FishCo", quantity=1, side="buy")


def test_an_order_read_goes_to_the_leader_first(backend):
    backend.tracker.announce(2, 5)
    backend.channels["order-2"].script = [ORDER]
    assert backend.order(7) == ORDER
    assert asked(backend) == ["order-2"]


def test_an_order_read_a_hung_leader_does_not_answer_is_answered_by_a_follower(backend):
    backend.tracker.announce(3, 5)
    backend.channels["order-3"].script = [RpcTimeout("no reply")] * 5
    # order-2 does not know the entry committed yet and points at the hung leader; order-1 knows.
    backend.channels["order-2"].script = [NotLeader("order replica 2 does not lead", leader_hint=3, epoch=5)]
    backend.channels["order-1"].script = [ORDER]
    assert backend.order(7) == ORDER
    assert asked(backend) == ["order-3", "order-2", "order-1"]  # one timeout, not two: the stale hint is not followed


def test_an_order_read_with_no_leader_anywhere_asks_every_replica_and_says_try_again(backend):
    for name in ("order-1", "order-2", "order-3"):
        backend.channels[name].script = [NotLeader(f"{name} does not lead", None, 5)] * 100
    with pytest.raises(Unavailable, match="no order replica could answer"):
        backend.order(7)
    assert {"order-1", "order-2", "order-3"} <= set(asked(backend))


def test_only_a_leaders_not_found_is_an_answer(backend):
    backend.tracker.announce(1, 5)
    backend.channels["order-1"].script = [RemoteError(ErrorCode.ORDER_NOT_FOUND, "order not found")]
    with pytest.raises(RemoteError) as raised:
        backend.order(99)
    assert raised.value.code == ErrorCode.ORDER_NOT_FOUND
    assert asked(backend) == ["order-1"]
