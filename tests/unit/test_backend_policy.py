"""The frontend's retry and leader-following policy (frontend/backend.py),
over scripted fake channels: no sockets. Each fake replica answers from a
script (a reply, or an error to raise), and records what it was asked."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from common import config as configuration
from common.errors import NotLeader, PeerUnavailable, RemoteError, RemoteProtocolError, RpcTimeout
from common.protocol import ErrorCode, Lookup, PlaceTrade, StockInfo, TradeDone
from frontend.backend import Backend, Unavailable
from frontend.leader import LeaderTracker

REPO = Path(__file__).resolve().parents[2]
DONE = TradeDone(txn=7, name="FishCo", quantity=1, side="buy")


class FakeChannel:
    """One backend: answers each request with the next item of its script."""

    def __init__(self, label: str, log: list) -> None:
        self.label = label
        self.script: list = []
        self.log = log

    def request(self, msg, timeout_s, *, cancel=None, connect_s=None):
        self.log.append((self.label, msg))
        outcome = self.script.pop(0) if self.script else PeerUnavailable(f"{self.label} is not there")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        pass


@pytest.fixture
def backend():
    config = configuration.load(REPO / "config.toml", [
        "timeouts.request_ms=50", "timeouts.trade_deadline_ms=300", "timeouts.lookup_attempts=2",
        "security.curve=false"])
    calls: list = []
    channels: dict[str, FakeChannel] = {}

    def open_channel(endpoint: str, label: str) -> FakeChannel:
        channels[label] = FakeChannel(label, calls)
        return channels[label]

    tracker = LeaderTracker([r.id for r in config.orders])
    made = Backend(config, None, None, tracker, threading.Lock(), channel=open_channel)
    made.calls, made.channels = calls, channels
    return made


def asked(backend) -> list[str]:
    return [label for label, _ in backend.calls]


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
    assert first == second == PlaceTrade("k1", "FishCo", 1, "buy")  # same request id: never applied twice
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
    assert all(msg == PlaceTrade("k1", "FishCo", 1, "buy") for _, msg in backend.calls)
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


def test_a_lookup_is_tried_lookup_attempts_times_then_is_a_503(backend):
    backend.channels["catalog"].script = [RpcTimeout("no reply"), StockInfo("FishCo", 1.0, 5, 0, 1, 1)]
    assert backend.lookup("FishCo").quantity == 5
    backend.channels["catalog"].script = [RpcTimeout("no reply")] * 5
    with pytest.raises(Unavailable, match="catalog"):
        backend.lookup("FishCo")
    assert [label for label, msg in backend.calls if isinstance(msg, Lookup)] == ["catalog"] * 4
