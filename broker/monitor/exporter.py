"""``--prometheus HOST:PORT``: the whole cluster, as the monitor sees it, for Prometheus.

No new source of truth: the listener's loop feeds the same pure
:class:`broker.monitor.state.MonitorState` as for the live view, and
:class:`SnapshotSink` keeps its latest :meth:`MonitorState.snapshot`, taken
in the listener's thread every :data:`REFRESH_S`. A snapshot is never
changed once taken, so the HTTP server's thread (prometheus_client's
``start_http_server``) reads the newest one without a lock, and
:func:`families` turns it into metric families when Prometheus scrapes.

Per node: up, state, heartbeat age, restarts, socket events and rates; and
the figures its heartbeat carries (a replica's role, epoch, last
transaction, applied index, lag and counters; the catalog's applied and
commit index, its lag, the replica it reads from and its counters; a
frontend's cache, backend calls and leader). A node the monitor takes for
dead keeps only ``up``, ``state``, its age and its restarts: its last status
would otherwise show, say, a dead leader as still leading. Every family is
named ``bazaar_cluster_*``; ``docs/MONITOR.md`` ("Prometheus") lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.heartbeat import Ticker
from common.protocol import Message, ReplicaRole, Topic

from .state import Derived, MonitorState, NodeRow, Snapshot

# How often the listener's loop takes a fresh snapshot (the heartbeat interval's order).
REFRESH_S = 0.1
STATES = ("unknown", "alive", "silent", "dead")
P = "bazaar_cluster_"

# A node's rates (NodeRow.rates keys) and the family each becomes.
NODE_RATES = {
    "trades": ("node_trades_per_second",
               "Trades per second: received by a replica; carried out, as the catalog applied them from the log."),
    "reads": ("node_reads_per_second", "Order reads (GET /orders/<n>) per second received by a replica."),
    "lookups": ("node_lookups_per_second",
                "Lookups per second: answered by the catalog, by an order replica, or by a frontend."),
    "applied": ("node_applied_entries_per_second", "Log entries per second the catalog applied."),
    "orders": ("node_order_calls_per_second", "Trade and order-read attempts per second a frontend sent to a replica."),
}
# The cluster's rates (Snapshot.rates keys).
CLUSTER_RATES = {
    "trades": ("trades_per_second", "Transaction numbers handed out per second (the leader's log)."),
    "requests": ("trade_requests_per_second", "Trades per second received by the replicas (retries included)."),
    "lookups": ("lookups_per_second", "Lookups per second over every frontend."),
    "catalog_lookups": ("catalog_lookups_per_second", "Lookups per second the catalog served (cache misses)."),
    "invalidations": ("invalidations_per_second",
                      "Stock changes per second the catalog published (the trades it applied from the log)."),
    "stock_msgs": ("stock_messages_per_second", "stock_changes messages per second the monitor received."),
    "bus": ("bus_messages_per_second", "Bus messages per second the monitor received."),
}
# (family suffix, ReplicaStatus attribute, help); gauges, then counters.
REPLICA_GAUGES = (
    ("replica_epoch", "term", "The replica's epoch (Raft term)."),
    ("replica_last_txn", "last_txn", "The last transaction number in the replica's log."),
    ("replica_last_index", "last_index", "The last index of the replica's log (trades and no-op entries)."),
    ("replica_commit_index", "commit", "The replica's commit index."),
    ("replica_applied_index", "applied", "The log index the replica's book has folded (applied) up to."),
    ("replica_queued", "queued", "Trades waiting on a new leader for its first entry to commit."),
    ("replica_awaiting", "awaiting", "Trades the leader decided, waiting for their log entry to commit."),
)
REPLICA_COUNTERS = (
    ("replica_trades", "trades", "Trade requests the replica received since it started."),
    ("replica_reads", "reads", "Order reads the replica received since it started."),
    ("replica_lookups", "lookups", "Lookups the replica answered (the catalog down or behind) since it started."),
    ("replica_bad_requests", "bad_requests", "Malformed requests the replica refused since it started."),
    ("replica_dropped_sends", "dropped_sends", "Messages to peers the replica dropped (queue full) since it started."),
)
CATALOG_GAUGES = (
    ("catalog_applied_index", "applied",
     "The order log index the catalog has applied (its table is the fold of the log up to it)."),
    ("catalog_commit_index", "commit", "The commit index the order replicas last told the catalog."),
)
CATALOG_COUNTERS = (
    ("catalog_lookups", "lookups", "Lookups the catalog received since it started."),
    ("catalog_behind", "behind", "Lookups the catalog answered 'behind' (it had not applied the index they "
                                 "named) since it started."),
    ("catalog_trades", "trades", "Trades carried out (log entries with a transaction number) the catalog "
                                 "applied since it started."),
    ("catalog_bad_requests", "bad_requests", "Malformed requests the catalog refused since it started."),
)
CACHE_COUNTERS = (
    ("frontend_cache_hits", "hits", "Lookups a frontend answered from its cache."),
    ("frontend_cache_misses", "misses", "Lookups a frontend's cache did not hold."),
    ("frontend_cache_bypassed", "bypassed", "Lookups sent past a frontend's cache while its stream was not whole."),
    ("frontend_cache_flushes", "flushes", "Times a frontend emptied its whole cache."),
)
BACKEND_COUNTERS = (
    ("frontend_backend_retries", "retries", "Backend attempts a frontend tried again."),
    ("frontend_backend_timeouts", "timeouts", "Backend attempts a frontend sent that got no reply in time."),
    ("frontend_backend_unavailable", "unavailable", "Requests a frontend gave up (HTTP 503)."),
    ("frontend_backend_replica_lookups", "replica_lookups",
     "Lookups an order replica answered for a frontend (the catalog down or behind)."),
)


def families(snap: Snapshot, now: float) -> list[Metric]:
    """The cluster as metric families.

    :param now: the scrape's time (monotonic, as ``snap.now``): ages are
        counted to it, not to the snapshot.
    """
    late = max(0.0, now - snap.now)
    out = _Families()
    out.gauge("leader_replica", "The order leader's replica id as the monitor last heard it (0: none yet).",
              snap.leader or 0)
    out.gauge("epoch", "The highest epoch (Raft term) the monitor has heard of.", snap.epoch)
    out.gauge("bus_up", "1 while the monitor's connection to the broker is up and the broker speaks.",
              1 if snap.bus == "up" else 0)
    if snap.last_gap_s is not None:
        out.gauge("bus_last_gap_seconds", "How long the monitor's last loss of the bus lasted.", snap.last_gap_s)
    for key, (name, text) in CLUSTER_RATES.items():
        if snap.rates.get(key) is not None:
            out.gauge(name, text, snap.rates[key])
    if snap.hit_rate is not None:
        out.gauge("cache_hit_ratio", "Cache hits / (hits + misses) over every frontend since each started.",
                  snap.hit_rate)
    txns = [r.replica.last_txn for r in snap.nodes if r.replica is not None and _speaks(r)]
    if txns:
        out.gauge("last_txn", "The highest transaction number a live replica holds.", max(txns))
    for topic, n in sorted(snap.topics.items()):
        out.counter("bus_messages", "Bus messages the monitor received, by topic.", n, topic=topic)
    out.counter("malformed_messages", "Bus messages the monitor could not decode (dropped).", snap.malformed)
    for row in snap.nodes:
        _node(out, row, late)
    return out.done()


def _speaks(row: NodeRow) -> bool:
    """The node's last status still counts (it is not dead, and was heard)."""
    return row.state in ("alive", "silent")


def _node(out: _Families, row: NodeRow, late: float) -> None:
    node = row.name
    out.gauge("node_up", "1 while the monitor hears the node's heartbeats.", 1 if row.state == "alive" else 0,
              node=node)
    for state in STATES:
        out.gauge("node_state", "The node's state as the monitor judges it (1 for the current one).",
                  1 if row.state == state else 0, node=node, state=state)
    out.counter("node_restarts", "Restarts (new incarnations) the monitor has seen.", row.restarts, node=node)
    for event, n in sorted(row.sockets.items()):
        out.counter("socket_events", "ZeroMQ socket-monitor events the node reported, by event.", n,
                    node=node, event=event)
    if row.age_s is None:
        return
    out.gauge("heartbeat_age_seconds", "Seconds since the node's last heartbeat.", row.age_s + late, node=node)
    out.gauge("node_info", "The node's kind and incarnation (always 1).", 1, node=node,
              kind=row.kind.value if row.kind is not None else "", incarnation=row.incarnation or "")
    if not _speaks(row):
        return
    for key, value in sorted(row.rates.items()):
        if key in NODE_RATES and value is not None:
            out.gauge(*NODE_RATES[key], value, node=node)
    if row.replica is not None:
        r = row.replica
        for role in ReplicaRole:
            out.gauge("replica_role", "The replica's Raft role (1 for the current one).",
                      1 if r.role is role else 0, node=node, role=role.value)
        _fields(out, r, REPLICA_GAUGES, REPLICA_COUNTERS, node)
        out.gauge("replica_ready", "1 when the replica serves trades (a leader that has caught up).",
                  1 if r.ready else 0, node=node)
        out.gauge("replica_recovering", "1 while the replica catches up after a start.", 1 if r.recovering else 0,
                  node=node)
        if row.lag is not None:
            out.gauge("replica_lag_entries", "Log entries the replica is behind the leader.", row.lag, node=node)
        out.gauge("replica_blank", "1 while the replica's data is new (a new cluster or a lost disk): it neither "
                  "votes nor counts toward a majority until it has caught up.", 1 if r.blank else 0, node=node)
    if row.catalog is not None:
        _fields(out, row.catalog, CATALOG_GAUGES, CATALOG_COUNTERS, node)
        if row.lag is not None:
            out.gauge("catalog_lag_entries", "Log entries the catalog is behind: the higher of its commit index "
                      "and the leader's, minus its applied index.", row.lag, node=node)
        out.gauge("catalog_source_replica", "The order replica the catalog fetches the log from (0: not said).",
                  row.catalog.source or 0, node=node)
    disk = row.replica or row.catalog
    if disk is not None:
        out.gauge("storage_ok", "1 while the node's disk takes its writes; 0 when it is full (the node refuses "
                  "what needs a write and serves the rest).", 1 if disk.storage == "ok" else 0, node=node)
    if row.frontend is not None:
        f = row.frontend
        out.gauge("frontend_leader_replica", "The replica a frontend sends trades to (0: none known).",
                  f.leader.leader or 0, node=node)
        out.gauge("frontend_leader_epoch", "The epoch of the leader a frontend follows.", f.leader.epoch, node=node)
        calls = "Requests a frontend sent to a backend (every attempt), by backend."
        out.counter("frontend_backend_calls", calls, f.backend.catalog_calls, node=node, backend="catalog")
        out.counter("frontend_backend_calls", calls, f.backend.order_calls, node=node, backend="order")
        _fields(out, f.backend, (), BACKEND_COUNTERS, node)
        if f.cache is not None:
            out.gauge("frontend_cache_entries", "Stocks in a frontend's cache.", f.cache.size, node=node)
            out.gauge("frontend_cache_streaming", "1 while a frontend's cache serves (its stream is whole).",
                      1 if f.cache.streaming else 0, node=node)
            _fields(out, f.cache, (), CACHE_COUNTERS, node)


def _fields(out: _Families, status: Message, gauges, counters, node: str) -> None:
    for name, attr, text in gauges:
        out.gauge(name, text, getattr(status, attr), node=node)
    for name, attr, text in counters:
        out.counter(name, text, getattr(status, attr), node=node)


class _Families:
    """Families by name, each made on its first sample (labels in call order)."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, text: str, value: float, **labels: str) -> None:
        self._add(GaugeMetricFamily, name, text, value, labels)

    def counter(self, name: str, text: str, value: float, **labels: str) -> None:
        self._add(CounterMetricFamily, name, text, value, labels)

    def _add(self, kind: type, name: str, text: str, value: float, labels: dict[str, str]) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = kind(P + name, text, labels=list(labels))
        family.add_metric(list(labels.values()), value)

    def done(self) -> list[Metric]:
        return list(self._families.values())


class SnapshotSink:
    """A listener sink that draws nothing and keeps the newest snapshot.

    :param refresh_s: how often to take one.
    """

    def __init__(self, refresh_s: float = REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self.ticker: Ticker | None = None
        self.latest: Snapshot | None = None

    def bus(self, topic: Topic, msg: Message, wall: float) -> None:
        pass

    def socket(self, label: str, event: str, endpoint: str, wall: float) -> None:
        pass

    def derived(self, events: list[Derived], wall: float) -> None:
        pass

    def refresh(self, state: MonitorState, now: float, wall: float) -> None:
        if self.ticker is None:
            self.ticker = Ticker(self.refresh_s, now)
        if self.ticker.due(now):
            self.latest = state.snapshot(now, feed_lines=0)

    def wait_s(self, now: float) -> float:
        return 0.0 if self.ticker is None else self.ticker.remaining(now)


class ClusterCollector:
    """What the registry asks at each scrape (runs in the HTTP server's thread).

    :param latest: returns the newest snapshot, or None before the first.
    :param clock: monotonic seconds, the clock the snapshots were taken with.
    """

    def __init__(self, latest: Callable[[], Snapshot | None], clock: Callable[[], float]) -> None:
        self.latest = latest
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        snap = self.latest()
        if snap is not None:
            yield from families(snap, self.clock())


@dataclass
class Address:
    """Where the exporter listens."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every address).

        :raises ValueError: saying what the form is.
        """
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"--prometheus wants HOST:PORT (a port of 0 to 65535), got {text!r}")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        return cls(host or "0.0.0.0", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Exporter:
    """The HTTP server that answers scrapes, on a thread of its own, until :meth:`close`.

    :raises OSError: if it cannot listen there (a port in use).
    """

    def __init__(self, address: Address, sink: SnapshotSink, clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ClusterCollector(lambda: sink.latest, clock))
        self.server, self.thread = start_http_server(address.port, address.host, self.registry)
        self.port: int = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)

