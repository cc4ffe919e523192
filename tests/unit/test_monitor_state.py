"""The monitor's pure state: liveness, leaders, catch-up, flushes, the bus's
own connection, rates and the feed, driven by hand-made messages and a fake
clock (no sockets)."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest
from rich.console import Console

from broker.monitor.feed import SOCKETS, Feed
from broker.monitor.jsonlines import JsonLines
from broker.monitor.rates import EventRate, Rate
from broker.monitor.state import SETTLE_S, Kind, MonitorState
from broker.monitor.view import describe, render
from common.protocol import (
    AuthRefusedEvent, AuthStatus, BackendStatus, BrokerStatus, CacheFlushedEvent, CacheStatus, CampaignEvent, CatalogStatus, CaughtUpEvent, FrontendStatus, Heartbeat,
    LeaderAnnouncement, LeaderBelief, LeaderChangedEvent, LeaderElectedEvent, NodeEvent, NodeKind, ReplicaRole,
    ReplicaStatus, SocketEvent, StartedEvent, SteppedDownEvent, StockChanged, StockChanges, StoppingEvent, StorageEvent, Topic,
)

WINDOW_S = 0.3
INTERVAL_S = 0.1
NODES = ["broker", "catalog", "order-1", "order-2", "order-3", "frontend"]
KINDS = {"broker": NodeKind.BROKER, "catalog": NodeKind.CATALOG, "frontend": NodeKind.FRONTEND,
         **{f"order-{i}": NodeKind.REPLICA for i in (1, 2, 3)}}
Status = ReplicaStatus | CatalogStatus | FrontendStatus | BrokerStatus | None


class Clock:
    """A fake monotonic clock."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Bus:
    """Feeds a :class:`MonitorState` the way the listener would, and remembers
    every derived event."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.state = MonitorState(NODES, {1: "order-1", 2: "order-2", 3: "order-3"}, WINDOW_S)
        self.derived: list = []
        self.seq: dict[str, int] = {}
        self.incarnations = {name: f"{name}-a" for name in NODES}
        # What each node's next heartbeat carries (its kind is KINDS[node]).
        self.status: dict[str, Status] = {
            "broker": None,
            "catalog": catalog_status(),
            "frontend": frontend_status(),
            **{f"order-{i}": replica_status(i, role="leader" if i == 3 else "follower") for i in (1, 2, 3)},
        }

    def send(self, topic: Topic, msg) -> list:
        out = self.state.handle(topic, msg, self.clock.now)
        self.derived += out
        return out

    def beat(self, node: str) -> list:
        self.seq[node] = self.seq.get(node, 0) + 1
        status = self.status[node]
        return self.send(Topic.HEARTBEAT, Heartbeat(
            node, self.incarnations[node], self.seq[node], 100, KINDS[node],
            replica=status if isinstance(status, ReplicaStatus) else None,
            catalog=status if isinstance(status, CatalogStatus) else None,
            frontend=status if isinstance(status, FrontendStatus) else None,
            broker=status if isinstance(status, BrokerStatus) else None,
        ))

    def event(self, event: NodeEvent) -> list:
        return self.send(Topic.EVENT, event)

    def socket(self, event: str) -> list:
        out = self.state.on_socket("sub", event, "tcp://127.0.0.1:5556", self.clock.now)
        self.derived += out
        return out

    def tick(self) -> list:
        out = self.state.tick(self.clock.now)
        self.derived += out
        return out

    def run(self, seconds: float, nodes: list[str]) -> list:
        """Advance in heartbeat steps; ``nodes`` beat each step. Returns what was derived."""
        start = len(self.derived)
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.advance(INTERVAL_S)
            for node in nodes:
                self.beat(node)
            self.tick()
        return self.derived[start:]

    def kinds(self, derived: list | None = None, node: str | None = None) -> list[str]:
        return [d.kind.value for d in (self.derived if derived is None else derived)
                if node is None or d.node == node]


def replica_status(i: int, role: str = "follower", term: int = 1, leader: int | None = 3, last_index: int = 10,
                   recovering: bool = False, trades: int = 0, last_txn: int = 5) -> ReplicaStatus:
    return ReplicaStatus(id=i, role=ReplicaRole(role), term=term, leader=leader, commit=last_index,
                         last_index=last_index, recovering=recovering, down=[], ready=role == "leader", queued=0,
                         awaiting=0, next_txn=last_txn + 1, last_txn=last_txn, trades=trades, reads=0,
                         bad_requests=0, dropped_sends=0)


def catalog_status(applied: int = 10, commit: int | None = None, lookups: int = 0, trades: int = 0,
                   source: int | None = 3) -> CatalogStatus:
    """The catalog at log index ``applied``, told of ``commit`` (default: level with it)."""
    return CatalogStatus(applied=applied, commit=applied if commit is None else commit, lookups=lookups,
                         trades=trades, bad_requests=0, source=source)


def frontend_status(hits: int = 0, misses: int = 0, flushes: int = 0) -> FrontendStatus:
    cache = CacheStatus(size=0, capacity=10, streaming=True, hits=hits, misses=misses, bypassed=0, installs=0,
                        stale_refused=0, invalidations=0, evictions=0, flushes=flushes, hit_rate=0.0)
    return FrontendStatus(node="frontend", cache=cache, leader=LeaderBelief(leader=3, epoch=1),
                          backend=BackendStatus(catalog_calls=0, order_calls=0, retries=0, unavailable=0), heard={})


@pytest.fixture
def bus() -> Bus:
    b = Bus()
    b.socket("connected")
    b.socket("handshake_succeeded")
    b.run(0.5, NODES)
    return b


# --- liveness ---------------------------------------------------------------------


def test_first_heartbeats_are_sightings_and_the_first_leader_is_a_change(bus):
    assert sorted(bus.kinds([d for d in bus.derived if d.kind is Kind.NODE_SEEN])) == ["node_seen"] * len(NODES)
    changes = [d for d in bus.derived if d.kind is Kind.LEADER_CHANGED]
    assert len(changes) == 1 and changes[0].detail["leader"] == 3 and changes[0].detail["previous"] is None
    assert bus.kinds(bus.derived, "monitor") == ["bus_connected"]


def test_a_silent_node_is_dead_after_the_window_and_not_before(bus):
    others = [n for n in NODES if n != "order-2"]
    early = bus.run(WINDOW_S - INTERVAL_S, others)
    assert "node_dead" not in bus.kinds(early)
    late = bus.run(2 * INTERVAL_S, others)
    dead = [d for d in late if d.kind is Kind.NODE_DEAD]
    assert [d.node for d in dead] == ["order-2"]
    assert WINDOW_S < dead[0].detail["silent_s"] <= WINDOW_S + 2 * INTERVAL_S
    assert dead[0].detail["reason"] == "silent"
    assert "leader_lost" not in bus.kinds(late)  # order-2 was a follower
    assert bus.run(1.0, others) == []  # reported once
    row = next(r for r in bus.state.snapshot(bus.clock.now).nodes if r.name == "order-2")
    assert row.state == "dead" and row.down_s > 0


def test_a_dead_node_that_speaks_again_is_back_and_a_new_incarnation_is_a_restart(bus):
    others = [n for n in NODES if n != "order-1"]
    bus.run(0.6, others)
    back = bus.run(INTERVAL_S, NODES)
    assert bus.kinds(back) == ["node_back"]
    assert back[0].detail["restarted"] is False and back[0].detail["down_s"] > 0

    bus.incarnations["order-1"] = "order-1-b"  # restarted faster than the window: never seen dead
    again = bus.run(INTERVAL_S, NODES)
    # Its first heartbeat already says it follows a leader, not recovering: caught up.
    assert bus.kinds(again) == ["node_back", "caught_up"]
    assert again[0].detail == {"incarnation": "order-1-b", "restarted": True,
                               "previous_incarnation": "order-1-a", "silent_s": pytest.approx(INTERVAL_S)}
    assert next(r for r in bus.state.snapshot(bus.clock.now).nodes if r.name == "order-1").restarts == 1


def test_a_stopping_node_is_dead_at_once(bus):
    out = bus.event(StoppingEvent("catalog"))
    assert bus.kinds(out) == ["node_dead"] and out[0].detail["reason"] == "stopping"
    assert bus.run(1.0, [n for n in NODES if n != "catalog"]) == []


def test_the_leaders_death_is_a_lost_leader(bus):
    out = bus.run(0.6, [n for n in NODES if n != "order-3"])
    assert bus.kinds(out) == ["node_dead", "leader_lost"]
    assert out[1].detail == {"leader": 3, "epoch": 1}


# --- the bus itself -------------------------------------------------------------


def test_while_the_broker_is_silent_no_other_node_is_judged(bus):
    """A hung broker: the SUB stays connected but nothing arrives."""
    out = bus.run(3.0, [])
    assert bus.kinds(out) == ["node_dead"] and out[0].node == "broker"
    snap = bus.state.snapshot(bus.clock.now)
    assert {r.name: r.state for r in snap.nodes} == {"broker": "dead", **{n: "silent" for n in NODES[1:]}}
    assert snap.bus == "silent"


def test_a_broker_restart_shows_as_a_gap_and_nodes_that_did_not_return_die_after_the_settle_time(bus):
    out = bus.socket("disconnected")
    assert bus.kinds(out) == ["bus_disconnected"]
    for _ in range(5):
        bus.clock.advance(0.1)
        bus.socket("connect_retried")
    gap = bus.run(1.5, [])
    assert bus.kinds(gap) == ["node_dead"] and gap[0].node == "broker"
    assert bus.state.snapshot(bus.clock.now).bus == "down"

    out = bus.socket("connected")
    assert bus.kinds(out) == ["bus_connected"]
    assert out[0].detail["retries"] == 5 and out[0].detail["down_s"] == pytest.approx(2.0)
    bus.incarnations["broker"] = "broker-b"
    back = bus.run(WINDOW_S + SETTLE_S + 0.5, [n for n in NODES if n != "frontend"])
    assert bus.kinds(back) == ["node_back", "node_dead"]
    assert back[0].node == "broker" and back[0].detail["restarted"] is True
    assert back[1].node == "frontend"
    assert bus.state.snapshot(bus.clock.now).last_gap_s == pytest.approx(2.0)


def test_a_monitor_started_before_the_broker_reports_it_unreachable_once():
    b = Bus()
    assert b.kinds(b.socket("connect_retried")) == ["bus_disconnected"]
    assert b.socket("connect_retried") == []
    assert b.kinds(b.socket("connected")) == ["bus_connected"]
    assert b.socket("handshake_succeeded") == []


# --- leaders, catch-up, flushes, stock changes ---------------------------------------


def test_leader_changes_only_for_a_higher_epoch_from_any_source(bus):
    assert bus.send(Topic.LEADER, LeaderAnnouncement(3, 1, "tcp://x")) == []
    out = bus.event(LeaderElectedEvent("order-2", leader=2, epoch=2, last_index=10))
    assert bus.kinds(out) == ["leader_changed"]
    assert out[0].detail == {"leader": 2, "epoch": 2, "previous": 3, "previous_epoch": 1, "source": "leader_elected"}
    assert bus.send(Topic.LEADER, LeaderAnnouncement(3, 1, "tcp://x")) == []  # stale
    assert bus.event(LeaderChangedEvent("order-1", leader=None, epoch=3)) == []  # nobody known
    bus.status["order-1"] = replica_status(1, role="leader", term=4, leader=1)
    out = bus.beat("order-1")
    assert bus.kinds(out) == ["leader_changed"] and out[0].node == "order-1" and out[0].detail["epoch"] == 4
    snap = bus.state.snapshot(bus.clock.now)
    assert (snap.leader, snap.leader_node, snap.epoch) == (1, "order-1", 4)


def test_a_restarted_replica_catches_up_once_whether_the_event_or_the_heartbeat_says_so(bus):
    bus.incarnations["order-1"] = "order-1-b"
    bus.status["order-1"] = replica_status(1, recovering=True, leader=None, last_index=3)
    out = bus.run(0.3, NODES)
    assert bus.kinds(out) == ["node_back"]
    assert next(r for r in bus.state.snapshot(bus.clock.now).nodes if r.name == "order-1").lag == 7
    out = bus.event(CaughtUpEvent("order-1", index=10, leader=3))
    assert bus.kinds(out) == ["caught_up"] and out[0].detail["source"] == "event"
    bus.status["order-1"] = replica_status(1)
    assert bus.run(0.3, NODES) == []  # the heartbeat agrees: no second report

    bus.incarnations["order-2"] = "order-2-b"  # its caught_up event is lost (slow joiner)
    bus.status["order-2"] = replica_status(2, recovering=True, leader=None)
    bus.run(0.2, NODES)
    bus.status["order-2"] = replica_status(2)
    out = bus.run(0.2, NODES)
    assert bus.kinds(out) == ["caught_up"] and out[0].node == "order-2" and out[0].detail["source"] == "heartbeat"


def test_a_running_replica_seen_for_the_first_time_is_not_reported_as_caught_up(bus):
    assert "caught_up" not in bus.kinds()


def test_cache_flushes_are_reported_once_from_the_event_or_the_heartbeat(bus):
    out = bus.event(CacheFlushedEvent("frontend", reason="broker disconnected", flushes=1))
    assert bus.kinds(out) == ["cache_flushed"] and out[0].detail == {"reason": "broker disconnected", "flushes": 1}
    bus.status["frontend"] = frontend_status(flushes=1)
    assert bus.run(0.3, NODES) == []
    bus.status["frontend"] = frontend_status(flushes=2)
    out = bus.run(0.1, NODES)
    assert bus.kinds(out) == ["cache_flushed"] and out[0].detail == {"reason": None, "flushes": 2}
    assert bus.event(CacheFlushedEvent("frontend", reason="gap", flushes=2)) == []


def test_other_node_events_enter_the_feed_with_the_fields_they_carry(bus):
    assert bus.event(StartedEvent("catalog", applied=7)) == []
    assert bus.event(SteppedDownEvent("order-3", epoch=2)) == []
    assert bus.event(CampaignEvent("order-2", epoch=2, pre_vote=True, last_index=10)) == []  # folded: not shown
    assert bus.event(SocketEvent("order-1", socket="peer-3", event="disconnected",
                                 endpoint="tcp://127.0.0.1:5563")) == []
    items = bus.state.feed.recent(3)
    assert [(i.kind, i.node, i.detail) for i in items[:2]] == [
        ("started", "catalog", {"applied": 7}), ("stepped_down", "order-3", {"epoch": 2})]
    assert describe(items[0]) == "started applied=7"
    assert items[2].kind == SOCKETS and dict(items[2].counts) == {"disconnected": 1} and items[2].labels == {"peer-3"}
    row = next(r for r in bus.state.snapshot(bus.clock.now).nodes if r.name == "order-1")
    assert row.sockets == {"disconnected": 1}


def changes(prev: int, index: int, *versions: int) -> StockChanges:
    """The catalog applied entries ``prev + 1`` to ``index``, changing one stock per version."""
    return StockChanges(prev, index, [StockChanged(f"S{v}", 1.0, 10, v) for v in versions])


def test_stock_changes_that_chain_are_no_gap(bus):
    assert bus.send(Topic.STOCK, changes(6, 7, 7)) == []
    assert bus.send(Topic.STOCK, changes(7, 9, 8, 9)) == []  # a page of two entries
    assert bus.send(Topic.STOCK, changes(9, 12, 12)) == []   # entries 10 and 11 changed no stock
    assert bus.state.stock_index == 12


def test_stock_changes_that_do_not_start_where_the_last_ended_are_a_gap(bus):
    assert bus.send(Topic.STOCK, changes(6, 8, 7, 8)) == []
    out = bus.send(Topic.STOCK, changes(10, 12, 11, 12))  # entries 9 and 10 never arrived
    assert bus.kinds(out) == ["stock_gap"] and out[0].node == "catalog"
    assert out[0].detail == {"expected": 9, "got": 11, "missed": 2}
    assert describe(bus.state.feed.recent(1)[0]) == \
        "missed the stock changes of 2 log entries on the bus: entry 9 to 10"
    assert bus.send(Topic.STOCK, changes(12, 13, 13)) == []  # chained again
    out = bus.send(Topic.STOCK, changes(14, 15, 15))
    assert describe(bus.state.feed.recent(1)[0]) == "missed the stock changes of 1 log entry on the bus: entry 14"


def test_a_catalog_that_applies_again_what_it_published_is_no_gap(bus):
    """A catalog that lost its last writes (or rebuilds from entry 1) publishes
    entries it had published before: the chain restarts there."""
    assert bus.send(Topic.STOCK, changes(10, 20, 20)) == []
    assert bus.send(Topic.STOCK, changes(0, 5, 1, 5)) == []
    assert bus.state.stock_index == 5
    out = bus.send(Topic.STOCK, changes(7, 8, 8))  # a real gap after the restart is still seen
    assert bus.kinds(out) == ["stock_gap"] and out[0].detail == {"expected": 6, "got": 8, "missed": 2}


def test_the_first_stock_changes_heard_are_no_gap():
    b = Bus()
    assert b.send(Topic.STOCK, changes(500, 501, 501)) == []
    assert b.state.stock_index == 501


# --- the catalog, a projection of the order log ----------------------------------------


def catalog_row(bus):
    snap = bus.state.snapshot(bus.clock.now)
    line = next(line for line in _text(snap).splitlines() if line.strip().startswith("catalog"))
    return next(r for r in snap.nodes if r.name == "catalog"), line


def test_the_catalog_row_shows_its_applied_index_its_source_and_its_lag(bus):
    row, line = catalog_row(bus)
    assert (row.lag, row.source) == (0, "order-3")
    assert re.search(r"applied 10 from order-3\s+0\s", line)
    bus.status["catalog"] = catalog_status(applied=40, commit=52, source=2)
    bus.status["order-3"] = replica_status(3, role="leader", last_index=52)
    bus.run(0.2, NODES)
    row, line = catalog_row(bus)
    assert (row.lag, row.source) == (12, "order-2")
    assert re.search(r"applied 40 from order-2\s+12\s", line)
    assert "fence" not in line and "seq" not in line


def test_a_catalog_cut_off_from_the_replicas_lags_behind_the_leaders_commit(bus):
    # Its own commit index stopped where the replicas last told it; the leader's went on.
    bus.status["catalog"] = catalog_status(applied=10, commit=10)
    bus.status["order-3"] = replica_status(3, role="leader", last_index=35)
    bus.run(0.2, NODES)
    assert catalog_row(bus)[0].lag == 25


def test_a_catalog_heartbeat_sampled_after_the_leaders_never_shows_a_negative_lag(bus):
    bus.status["catalog"] = catalog_status(applied=14, commit=14)  # the leader's beat still says 10
    bus.run(0.2, NODES)
    assert catalog_row(bus)[0].lag == 0


def test_a_catalog_that_has_not_started_reading_shows_no_source(bus):
    bus.status["catalog"] = catalog_status(applied=0, commit=0, source=None)
    bus.run(0.2, NODES)
    row, line = catalog_row(bus)
    assert row.source is None and row.lag == 10  # the leader has committed 10 entries
    assert re.search(r"applied 0\s+10\s", line)


def test_the_catalogs_trades_are_the_invalidation_rate_and_its_entries_a_rate_of_their_own(bus):
    for step in range(30):  # longer than the rate window
        bus.status["catalog"] = catalog_status(applied=10 + step * 5, trades=step * 3)
        bus.run(INTERVAL_S, NODES)
    snap = bus.state.snapshot(bus.clock.now)
    row = next(r for r in snap.nodes if r.name == "catalog")
    assert snap.rates["invalidations"] == pytest.approx(30.0)
    assert row.rates["trades"] == pytest.approx(30.0) and row.rates["applied"] == pytest.approx(50.0)
    assert "30.0 trades/s" in catalog_row(bus)[1]


def test_a_heartbeat_without_the_status_of_its_kind_is_shown_not_fatal(bus):
    # Garbage inside a status never gets here (the codec refuses it); a status
    # that is missing, or of another kind than the heartbeat says, may.
    bus.status["order-2"] = None
    bus.status["frontend"] = catalog_status(applied=999, lookups=999)  # not a frontend's: ignored
    bus.run(0.3, NODES)
    snap = bus.state.snapshot(bus.clock.now)
    rows = {r.name: r for r in snap.nodes}
    assert rows["order-2"].kind is NodeKind.REPLICA and rows["order-2"].replica is None and rows["order-2"].lag is None
    assert rows["frontend"].kind is NodeKind.FRONTEND and rows["frontend"].catalog is None
    assert rows["frontend"].frontend is None and "applied" not in rows["frontend"].rates
    text = _text(snap)
    assert "order-2" in text and "frontend" in text


# --- rates, snapshot, feed, outputs ---------------------------------------------------


def test_rates_come_from_counter_deltas_and_reset_when_a_counter_restarts():
    rate = Rate(window_s=2.0)
    for t in range(11):
        rate.add(t * 0.1, t * 5)
    assert rate.per_s(1.0) == pytest.approx(50.0)
    rate.add(1.1, 2)  # the node restarted
    assert rate.per_s(1.1) is None
    rate.add(1.2, 7)
    assert rate.per_s(1.2) == pytest.approx(50.0)
    assert rate.per_s(5.0) is None  # nothing new for longer than the window
    events = EventRate(window_s=2.0)
    for t in range(10):
        events.add(t * 0.1)
    assert events.per_s(1.0) == pytest.approx(10.0)


def test_snapshot_has_trade_lookup_and_invalidation_rates_and_lag(bus):
    for step in range(30):  # longer than the rate window
        bus.status["order-3"] = replica_status(3, role="leader", trades=step * 10, last_txn=10 + step * 10,
                                               last_index=100 + step * 10)
        bus.status["order-1"] = replica_status(1, last_index=100 + step * 10 - 4)
        bus.status["catalog"] = catalog_status(applied=100 + step * 10, trades=step * 10, lookups=step * 2)
        bus.status["frontend"] = frontend_status(hits=step * 3, misses=step)
        bus.run(INTERVAL_S, NODES)
    snap = bus.state.snapshot(bus.clock.now)
    assert snap.rates["trades"] == pytest.approx(100.0)
    assert snap.rates["requests"] == pytest.approx(100.0)
    assert snap.rates["invalidations"] == pytest.approx(100.0)
    assert snap.rates["catalog_lookups"] == pytest.approx(20.0)
    assert snap.rates["lookups"] == pytest.approx(40.0)
    assert snap.hit_rate == pytest.approx(0.75)
    lags = {r.name: r.lag for r in snap.nodes if r.kind == "replica"}
    assert lags == {"order-1": 4, "order-2": 390 - 10, "order-3": 0}
    text = _text(snap)
    assert "order-3" in text and "leader" in text and "100.0 trades/s" in text


def test_a_dead_leader_shows_as_was_leader_next_to_the_real_one(bus):
    alive = [n for n in NODES if n != "order-3"]
    bus.run(0.6, alive)  # order-3, the leader, fell silent
    bus.status["order-2"] = replica_status(2, role="leader", term=2, leader=2)
    bus.status["order-1"] = replica_status(1, term=2, leader=2)
    bus.run(0.3, alive)
    snap = bus.state.snapshot(bus.clock.now)
    rows = {r.name: r for r in snap.nodes}
    assert rows["order-3"].state == "dead" and rows["order-3"].replica.role is ReplicaRole.LEADER
    lines = {line.split()[0]: line for line in _text(snap).splitlines() if line.strip().startswith("order-")}
    assert "was leader" in lines["order-3"]
    assert " leader " in lines["order-2"] + " " and "was" not in lines["order-2"]


def test_socket_events_of_one_node_are_grouped_until_it_goes_quiet():
    feed = Feed(group_s=2.0)
    for i in range(10):
        feed.socket(1.0 + i * 0.1, "order-1", "peer-3", "connect_retried", "tcp://127.0.0.1:5563")
    feed.socket(2.0, "order-1", "peer-3", "disconnected", "tcp://127.0.0.1:5563")
    feed.socket(2.0, "order-2", "peer-3", "disconnected", "tcp://127.0.0.1:5563")
    feed.add(2.1, "node_dead", "order-3", {"reason": "silent", "silent_s": 0.35})
    feed.socket(3.0, "order-1", "peer-2", "connected", "tcp://127.0.0.1:5562")
    feed.socket(9.0, "order-1", "peer-2", "disconnected", "tcp://127.0.0.1:5562")
    items = feed.recent(10)
    assert [(i.kind, i.node) for i in items] == [
        (SOCKETS, "order-1"), (SOCKETS, "order-2"), ("node_dead", "order-3"), (SOCKETS, "order-1")]
    assert dict(items[0].counts) == {"connect_retried": 10, "disconnected": 1, "connected": 1}
    assert items[0].labels == {"peer-3", "peer-2"}
    assert "connect_retried ×10" in describe(items[0])
    assert describe(items[2]) == "DEAD: no heartbeat for 350 ms"


def test_json_lines_carry_bus_messages_derived_events_and_socket_events_filtered_by_topic(bus):
    out = io.StringIO()
    sink = JsonLines(out)
    sink.bus(Topic.LEADER, LeaderAnnouncement(3, 1, "tcp://x"), 1700000000.5)
    sink.derived(bus.derived[-1:], 1700000000.6)
    sink.socket("sub", "disconnected", "tcp://x", 1700000000.7)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"type": "bus", "topic": "leader", "time": 1700000000.5,
                        "message": {"msg": "leader", "leader": 3, "epoch": 1, "endpoint": "tcp://x", "commit": 0}}
    assert lines[1]["type"] == "derived" and lines[1]["kind"] == bus.derived[-1].kind.value
    assert lines[2] == {"type": "socket", "node": "monitor", "socket": "sub", "event": "disconnected",
                        "endpoint": "tcp://x", "time": 1700000000.7}
    only = io.StringIO()
    sink = JsonLines(only, ["derived", "heartbeat"])
    sink.bus(Topic.LEADER, LeaderAnnouncement(3, 1, "tcp://x"), 1.0)
    sink.bus(Topic.HEARTBEAT, Heartbeat("broker", "i", 1, 100, NodeKind.BROKER), 1.0)
    sink.socket("sub", "disconnected", "tcp://x", 1.0)
    sink.derived(bus.derived[-1:], 1.0)
    assert [json.loads(line)["type"] for line in only.getvalue().splitlines()] == ["bus", "derived"]


def test_an_event_in_json_lines_is_named_by_its_kind_with_its_fields():
    out = io.StringIO()
    JsonLines(out).bus(Topic.EVENT, CampaignEvent("order-2", epoch=2, pre_vote=True, last_index=1), 1.0)
    assert json.loads(out.getvalue())["message"] == {"msg": "campaign", "node": "order-2", "epoch": 2,
                                                     "pre_vote": True, "last_index": 1}


def test_a_heartbeat_in_json_lines_carries_its_kind_and_its_status_as_plain_values():
    out = io.StringIO()
    beat = Heartbeat("order-3", "i", 1, 100, NodeKind.REPLICA, replica=replica_status(3, role="leader"))
    JsonLines(out).bus(Topic.HEARTBEAT, beat, 1.0)
    message = json.loads(out.getvalue())["message"]
    assert message["msg"] == "heartbeat" and message["kind"] == "replica"
    assert message["replica"]["role"] == "leader" and message["replica"]["down"] == []
    assert message["catalog"] is None and message["frontend"] is None


def _text(snap) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render(snap, 1_700_000_000.0))
    return console.export_text()


# --- security ---------------------------------------------------------------------


def test_refusals_from_heartbeats_are_added_up_and_shown_per_node(bus):
    bus.status["catalog"] = dataclasses.replace(catalog_status(), auth=AuthStatus(True, refused=2, failed_handshakes=7))
    bus.status["broker"] = BrokerStatus(auth=AuthStatus(True, refused=1, failed_handshakes=0))
    bus.status["order-1"] = dataclasses.replace(replica_status(1), auth=AuthStatus(True, 0, 0))
    bus.run(0.2, NODES)
    snap = bus.state.snapshot(bus.clock.now)
    rows = {r.name: r for r in snap.nodes}
    assert (snap.refused, snap.failed_handshakes, snap.curve_off) == (3, 7, [])
    assert rows["catalog"].auth == AuthStatus(True, 2, 7) and rows["catalog"].curve is True
    assert rows["frontend"].auth is None and rows["frontend"].curve is True  # a client only: no gate
    assert rows["order-2"].curve is None  # says nothing (an older node): shown as nothing
    text = _text(snap)
    assert "refused 3 keys, 7 failed handshakes" in text
    assert "refused 2/7" in text and "refused 1/0" in text


def test_a_node_without_curve_is_shown_loudly(bus):
    bus.status["order-2"] = dataclasses.replace(replica_status(2), auth=AuthStatus(False, 0, 0))
    bus.status["frontend"] = dataclasses.replace(frontend_status(), curve=False)
    bus.run(0.2, NODES)
    snap = bus.state.snapshot(bus.clock.now)
    assert snap.curve_off == ["order-2", "frontend"]
    text = _text(snap)
    assert "CURVE OFF on order-2, frontend" in text
    assert text.count("CURVE OFF") == 3  # the header and both rows


def test_a_refused_connection_enters_the_feed_with_its_address_and_key(bus):
    key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    assert bus.event(AuthRefusedEvent("catalog", socket="router", address="10.1.2.3", key=key,
                                      reason="key not among the cluster's public keys", repeated=2)) == []
    item = bus.state.feed.recent(1)[0]
    assert (item.kind, item.node) == ("auth_refused", "catalog")
    assert describe(item) == (f"REFUSED on router: key {key} from 10.1.2.3 (and 2 more like it): "
                              "key not among the cluster's public keys")
    assert key in _text(bus.state.snapshot(bus.clock.now))


# --- storage ----------------------------------------------------------------------


def test_a_full_disk_is_shown_on_the_node_and_in_the_feed(bus):
    detail = "storage full: cannot write data/catalog.sqlite3 (40 KiB free)"
    bus.status["catalog"] = dataclasses.replace(catalog_status(), storage="full", storage_detail=detail)
    bus.status["order-1"] = dataclasses.replace(replica_status(1), blank=True)
    bus.run(0.2, NODES)
    assert bus.event(StorageEvent("catalog", state="full", detail=detail)) == []
    item = bus.state.feed.recent(1)[0]
    assert (item.kind, item.node, describe(item)) == ("storage", "catalog", f"DISK FULL: {detail}")
    text = _text(bus.state.snapshot(bus.clock.now))
    assert text.count("disk full") == 1 and f"DISK FULL: {detail}" in text
    assert "follower blank" in text
    bus.event(StorageEvent("catalog", state="ok", detail="data/catalog.sqlite3 takes writes again"))
    assert describe(bus.state.feed.recent(1)[0]) == "disk ok: data/catalog.sqlite3 takes writes again"
