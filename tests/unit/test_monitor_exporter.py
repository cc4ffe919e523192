"""The monitor's Prometheus exporter (broker.monitor.exporter): the metric
families made from MonitorState.snapshot, driven by hand-made heartbeats
and a fake clock as in test_monitor_state (no sockets)."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_monitor_state import NODES, WINDOW_S, Bus, catalog_status, frontend_status, replica_status

from broker.monitor.exporter import Address, ClusterCollector, SnapshotSink, families
from common.protocol import BackendStatus, LeaderAnnouncement, SocketEvent, Topic

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(bus: Bus, late: float = 0.0) -> Samples:
    snap = bus.state.snapshot(bus.clock.now, feed_lines=0)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families(snap, bus.clock.now + late) for s in f.samples}


def get(got: Samples, name: str, **labels: str) -> float | None:
    return got.get(("bazaar_cluster_" + name, tuple(sorted(labels.items()))))


@pytest.fixture
def bus() -> Bus:
    b = Bus()
    b.socket("connected")
    b.socket("handshake_succeeded")
    b.run(0.5, NODES)
    return b


def test_every_node_up_and_the_leader_known(bus):
    got = samples(bus)
    for node in NODES:
        assert get(got, "node_up", node=node) == 1
        assert get(got, "node_state", node=node, state="alive") == 1
        assert get(got, "node_state", node=node, state="dead") == 0
        assert 0 <= get(got, "heartbeat_age_seconds", node=node) <= 0.1
    assert get(got, "leader_replica") == 3 and get(got, "epoch") == 1
    assert get(got, "bus_up") == 1
    assert get(got, "replica_role", node="order-3", role="leader") == 1
    assert get(got, "replica_role", node="order-1", role="leader") == 0
    assert get(got, "replica_role", node="order-1", role="follower") == 1
    assert get(got, "replica_last_txn", node="order-2") == 5 and get(got, "last_txn") == 5
    assert get(got, "replica_lag_entries", node="order-1") == 0
    assert get(got, "node_info", node="order-1", kind="replica", incarnation="order-1-a") == 1
    assert get(got, "catalog_applied_index", node="catalog") == 10
    assert get(got, "catalog_commit_index", node="catalog") == 10
    assert get(got, "catalog_lag_entries", node="catalog") == 0
    assert get(got, "catalog_source_replica", node="catalog") == 3
    assert get(got, "replica_applied_index", node="order-1") == 0
    assert get(got, "frontend_leader_replica", node="frontend") == 3
    assert get(got, "bus_messages_total", topic="hb") > 0


def test_counters_and_rates_follow_the_heartbeats(bus):
    bus.status["order-3"] = replica_status(3, role="leader", trades=0, last_txn=5)
    bus.run(0.5, NODES)
    for k in range(1, 26):  # 20 trades a second, longer than the rates' window
        bus.status["order-3"] = replica_status(3, role="leader", trades=2 * k, last_txn=5 + 2 * k)
        bus.run(0.1, NODES)
    got = samples(bus)
    assert get(got, "replica_trades_total", node="order-3") == 50
    assert get(got, "last_txn") == 55
    assert get(got, "node_trades_per_second", node="order-3") == pytest.approx(20, rel=0.01)
    assert get(got, "trades_per_second") == pytest.approx(20, rel=0.01)
    assert get(got, "replica_lag_entries", node="order-1") == 0  # the followers' last_index did not move


def test_the_catalogs_applied_index_commit_index_and_lag_are_gauges(bus):
    bus.status["catalog"] = catalog_status(applied=40, commit=52, lookups=9, trades=31, source=2)
    bus.status["order-3"] = replica_status(3, role="leader", last_index=52)
    bus.run(0.2, NODES)
    got = samples(bus)
    assert get(got, "catalog_applied_index", node="catalog") == 40
    assert get(got, "catalog_commit_index", node="catalog") == 52
    assert get(got, "catalog_lag_entries", node="catalog") == 12
    assert get(got, "catalog_source_replica", node="catalog") == 2
    assert get(got, "catalog_lookups_total", node="catalog") == 9
    assert get(got, "catalog_trades_total", node="catalog") == 31
    assert get(got, "catalog_behind_total", node="catalog") == 0
    assert not [key for key in got if key[0] in ("bazaar_cluster_catalog_seq", "bazaar_cluster_catalog_fence_epoch",
                                                 "bazaar_cluster_catalog_batches_total")]


def test_a_catalog_whose_commit_index_stopped_lags_behind_the_leader(bus):
    bus.status["catalog"] = catalog_status(applied=10, commit=10)  # cut off from every replica
    bus.status["order-3"] = replica_status(3, role="leader", last_index=35)
    bus.run(0.2, NODES)
    assert get(samples(bus), "catalog_lag_entries", node="catalog") == 25


def test_a_dead_catalog_exports_no_lag(bus):
    bus.run(2 * WINDOW_S, [n for n in NODES if n != "catalog"])
    got = samples(bus)
    assert get(got, "node_up", node="catalog") == 0
    assert get(got, "catalog_lag_entries", node="catalog") is None
    assert get(got, "catalog_applied_index", node="catalog") is None


def test_replica_and_frontend_lookups_are_exported(bus):
    bus.status["order-2"] = dataclasses.replace(replica_status(2), applied=9, lookups=4)
    bus.status["frontend"] = dataclasses.replace(frontend_status(), backend=BackendStatus(
        catalog_calls=5, order_calls=6, retries=1, unavailable=0, replica_lookups=3))
    bus.run(0.2, NODES)
    got = samples(bus)
    assert get(got, "replica_applied_index", node="order-2") == 9
    assert get(got, "replica_lookups_total", node="order-2") == 4
    assert get(got, "frontend_backend_replica_lookups_total", node="frontend") == 3


def test_a_dead_leader_keeps_only_up_state_age_and_restarts(bus):
    bus.run(2 * WINDOW_S, [n for n in NODES if n != "order-3"])
    bus.send(Topic.LEADER, LeaderAnnouncement(leader=2, epoch=2, endpoint="tcp://127.0.0.1:5562"))
    got = samples(bus)
    assert get(got, "node_up", node="order-3") == 0
    assert get(got, "node_state", node="order-3", state="dead") == 1
    assert get(got, "heartbeat_age_seconds", node="order-3") > WINDOW_S
    assert get(got, "node_restarts_total", node="order-3") == 0
    assert not [key for key in got if key[0].startswith("bazaar_cluster_replica_") and ("node", "order-3") in key[1]]
    assert get(got, "leader_replica") == 2 and get(got, "epoch") == 2


def test_unknown_nodes_are_down_without_an_age():
    b = Bus()
    got = samples(b)
    assert get(got, "node_up", node="order-1") == 0
    assert get(got, "node_state", node="order-1", state="unknown") == 1
    assert get(got, "heartbeat_age_seconds", node="order-1") is None
    assert get(got, "leader_replica") == 0 and get(got, "bus_up") == 0


def test_ages_count_to_the_scrape_not_to_the_snapshot(bus):
    now = samples(bus)
    later = samples(bus, late=0.25)
    assert get(later, "heartbeat_age_seconds", node="broker") == pytest.approx(
        get(now, "heartbeat_age_seconds", node="broker") + 0.25)


def test_socket_events_are_counted_per_node_and_event(bus):
    for _ in range(3):
        bus.event(SocketEvent("order-1", socket="peer-3", event="connect_retried", endpoint="tcp://x:1"))
    bus.event(SocketEvent("order-1", socket="peer-3", event="disconnected", endpoint="tcp://x:1"))
    got = samples(bus)
    assert get(got, "socket_events_total", node="order-1", event="connect_retried") == 3
    assert get(got, "socket_events_total", node="order-1", event="disconnected") == 1


def test_a_frontend_without_a_cache_exports_its_backend_only(bus):
    bus.status["frontend"] = dataclasses.replace(bus.status["frontend"], cache=None)
    bus.run(0.2, NODES)
    got = samples(bus)
    assert get(got, "frontend_backend_calls_total", node="frontend", backend="order") == 0
    assert get(got, "frontend_cache_entries", node="frontend") is None


def test_the_collector_serves_the_sinks_newest_snapshot_as_valid_text(bus):
    sink = SnapshotSink(refresh_s=0.1)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(lambda: sink.latest, lambda: bus.clock.now))
    assert generate_latest(registry) == b""  # nothing before the first snapshot
    sink.refresh(bus.state, bus.clock.now, 0.0)
    first = sink.latest
    sink.refresh(bus.state, bus.clock.now + 0.05, 0.0)
    assert sink.latest is first  # not yet due
    assert sink.wait_s(bus.clock.now + 0.05) == pytest.approx(0.05)
    sink.refresh(bus.state, bus.clock.now + 0.1, 0.0)
    assert sink.latest is not first
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert {"bazaar_cluster_node_up", "bazaar_cluster_leader_replica", "bazaar_cluster_replica_trades"} <= names


@pytest.mark.parametrize("text,host,port", [
    ("127.0.0.1:9105", "127.0.0.1", 9105), (":9105", "0.0.0.0", 9105), ("[::1]:0", "::1", 0),
    ("monitor.internal:80", "monitor.internal", 80),
])
def test_addresses(text, host, port):
    address = Address.parse(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text", ["9105", "host:", "host:http", "host:70000", ""])
def test_bad_addresses_say_the_form(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        Address.parse(text)


def test_a_full_disk_and_a_blank_replica_are_exported(bus):
    got = samples(bus)
    assert get(got, "storage_ok", node="catalog") == 1 and get(got, "storage_ok", node="order-2") == 1
    assert get(got, "replica_blank", node="order-1") == 0 and get(got, "storage_ok", node="frontend") is None
    bus.status["order-2"] = dataclasses.replace(replica_status(2), storage="full", storage_detail="no space")
    bus.status["order-1"] = dataclasses.replace(replica_status(1), blank=True)
    bus.run(0.2, NODES)
    got = samples(bus)
    assert get(got, "storage_ok", node="order-2") == 0 and get(got, "replica_blank", node="order-1") == 1
