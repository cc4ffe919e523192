"""The monitor's picture of the cluster, as a pure state machine.

Nothing here touches a socket or reads a clock: the I/O loop
(:mod:`broker.monitor.listener`) passes every bus message to
:meth:`MonitorState.handle`, every event of its own SUB socket's monitor to
:meth:`MonitorState.on_socket`, and calls :meth:`MonitorState.tick` between
polls, each time with ``now`` (seconds, monotonic). Each returns the
:class:`Derived` events the monitor concluded from what it saw; the live view
renders :meth:`MonitorState.snapshot`.

A node, as the monitor judges it (liveness from :class:`common.heartbeat.Liveness`)::

    unknown --heartbeat--> alive                                  (node_seen)
    alive --silent for window_s while the bus works--> dead       (node_dead)
    alive --its own "stopping" event--> dead                      (node_dead, reason "stopping")
    dead --heartbeat--> alive                                     (node_back)
    alive --heartbeat of a new incarnation--> alive               (node_back, restarted)
    alive --silent while the bus does not work--> silent (not judged)

The bus works when the monitor's SUB socket is connected and the broker's own
heartbeat (which travels through the proxy) arrives. A node other than the
broker is declared dead only when the broker was heard at least ``window_s``
after the node last was, and not before ``window_s + SETTLE_S`` after the bus
last failed (publishers need a moment to reconnect to a restarted broker): a
broker outage shows as a gap, not as every node dying. The bus itself::

    unknown --connected--> up --disconnected--> down --connected--> up
    unknown --connect_retried--> down              (bus_disconnected, bus_connected)

Other derived events: ``leader_changed`` (a higher epoch, from announcements,
heartbeats or election events), ``leader_lost`` (the leader's node died),
``caught_up`` (a restarted replica stopped recovering: its event or its
heartbeat, whichever comes first, once per incarnation), ``cache_flushed``
(a frontend's event or a rise of its heartbeat's flush counter, once per
flush) and ``stock_gap`` (a break in the chain of the catalog's
:class:`common.protocol.StockChanges`: each covers the log entries ``prev`` + 1
to ``index``, and one whose ``prev`` is past the last ``index`` heard means
the monitor missed the entries between).

The catalog follows the order log: its heartbeat says the index it has
applied and the commit index the replicas told it. Its lag
(:attr:`NodeRow.lag`) is the higher of that commit index and the leader's
(from the leader's latest heartbeat) minus what it applied, so a catalog cut
off from every replica, whose own commit index no longer moves, still shows
how far behind it falls.

Security: every node that accepts connections says in its heartbeat
(:class:`common.protocol.AuthStatus`) whether it runs CURVE and how many
connections it refused; a frontend says whether it runs CURVE. The snapshot
lists the nodes that run without (:attr:`Snapshot.curve_off`) and adds up the
refusals; each ``auth_refused`` event (who was refused, from where, with
which key) goes to the feed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from common.heartbeat import Liveness
from common.protocol import (
    AuthStatus, BrokerStatus, CacheFlushedEvent, CampaignEvent, CatalogStatus, CaughtUpEvent, FrontendStatus,
    Heartbeat,
    LeaderAnnouncement, LeaderChangedEvent, LeaderElectedEvent, Message, NodeEvent, NodeKind, ReplicaRole,
    ReplicaStatus, SocketEvent, StockChanges, StoppingEvent, Topic,
)

from .feed import Feed, FeedItem
from .rates import EventRate, Rate

BROKER = "broker"
CATALOG = "catalog"
MONITOR = "monitor"
# After the bus comes back, publishers need this long (beyond one liveness
# window) to reconnect to the broker before silence counts against them.
SETTLE_S = 1.0
# Node events already shown through a derived event (or grouped) in the feed.
_FOLDED_EVENTS = (SocketEvent, LeaderElectedEvent, LeaderChangedEvent, CaughtUpEvent, CacheFlushedEvent,
                  CampaignEvent)
_UP_EVENTS = {"connected", "handshake_succeeded"}
_DOWN_EVENTS = {"disconnected", "handshake_failed", "handshake_failed_protocol", "handshake_failed_auth"}


class Kind(StrEnum):
    """What the monitor derives."""

    NODE_SEEN = "node_seen"
    NODE_DEAD = "node_dead"
    NODE_BACK = "node_back"
    LEADER_CHANGED = "leader_changed"
    LEADER_LOST = "leader_lost"
    CAUGHT_UP = "caught_up"
    CACHE_FLUSHED = "cache_flushed"
    BUS_DISCONNECTED = "bus_disconnected"
    BUS_CONNECTED = "bus_connected"
    STOCK_GAP = "stock_gap"


@dataclass(frozen=True)
class Derived:
    """One conclusion of the monitor; ``at`` is monotonic time."""

    kind: Kind
    at: float
    node: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"kind": ..., "node": ..., <detail>}``."""
        return {"kind": self.kind.value, "node": self.node, **self.detail}


@dataclass
class NodeInfo:
    """What the monitor knows of one node (its liveness lives in :class:`Liveness`).

    ``kind`` and the status of that kind come from its latest heartbeat (None
    until one is heard, and for a kind without a status).
    """

    name: str
    incarnation: str | None = None
    last_beat: float | None = None
    kind: NodeKind | None = None
    replica: ReplicaStatus | None = None
    catalog: CatalogStatus | None = None
    frontend: FrontendStatus | None = None
    broker: BrokerStatus | None = None
    died_at: float | None = None
    restarts: int = 0
    awaiting_catch_up: bool = False
    flushes: int | None = None
    rates: dict[str, Rate] = field(default_factory=dict)
    sockets: Counter[str] = field(default_factory=Counter)

    def count(self, key: str, now: float, value: float, reset: bool) -> None:
        self.rates.setdefault(key, Rate()).add(now, value, reset)


@dataclass(frozen=True)
class NodeRow:
    """One node as the view shows it. ``state``: unknown, alive, silent or dead.
    ``kind`` and the status are the latest heartbeat's (a dead node's last words);
    ``lag``: log entries behind, for a replica (the leader's ``last_index``
    minus its own) and for the catalog (the commit index minus its
    ``applied``, see the module docstring); ``source``: the node name of the
    replica the catalog reads the log from; ``auth`` is its CURVE gate's
    figures (a node that accepts connections), ``curve`` whether it runs
    CURVE (None until it says)."""

    name: str
    kind: NodeKind | None
    state: str
    age_s: float | None
    down_s: float | None
    incarnation: str | None
    restarts: int
    replica: ReplicaStatus | None
    catalog: CatalogStatus | None
    frontend: FrontendStatus | None
    rates: dict[str, float | None]
    lag: int | None
    sockets: dict[str, int]
    auth: AuthStatus | None = None
    curve: bool | None = None
    source: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything the live view shows, at ``now``."""

    now: float
    nodes: list[NodeRow]
    leader: int | None
    leader_node: str | None
    epoch: int
    bus: str
    bus_down_s: float | None
    last_gap_s: float | None
    rates: dict[str, float | None]
    hit_rate: float | None
    topics: dict[str, int]
    malformed: int
    feed: list[FeedItem]
    curve_off: list[str] = field(default_factory=list)
    refused: int = 0
    failed_handshakes: int = 0


class MonitorState:
    """The cluster as seen from the bus.

    :param nodes: the node names config.toml lists (shown even before heard).
    :param replicas: order replica id -> node name.
    :param window_s: heartbeat interval x liveness: silence longer is death.
    """

    def __init__(self, nodes: list[str], replicas: dict[int, str], window_s: float) -> None:
        self.window_s = window_s
        self.replicas = dict(replicas)
        self.live = Liveness(window_s)
        self.nodes: dict[str, NodeInfo] = {name: NodeInfo(name) for name in nodes}
        self.feed = Feed()
        self.leader: int | None = None
        self.epoch = 0
        self.sub_up: bool | None = None
        self.bus_down_since: float | None = None
        self.bus_retries = 0
        self.last_gap_s: float | None = None
        self.resume_at = 0.0
        self.stock_index: int | None = None  # the last StockChanges.index heard
        self.max_txn = 0
        self.txn = Rate()
        self.stock_msgs = EventRate()
        self.bus_msgs = EventRate()
        self.topics: Counter[str] = Counter()
        self.malformed = 0

    @classmethod
    def from_config(cls, config) -> MonitorState:
        """Build from a :class:`common.config.Config`."""
        return cls(config.node_names(), {r.id: r.name for r in config.orders}, config.heartbeat.window_s)

    # --- inputs -------------------------------------------------------------------

    def handle(self, topic: Topic, msg: Message, now: float) -> list[Derived]:
        """Take one bus message in."""
        self.topics[topic.value.decode()] += 1
        self.bus_msgs.add(now)
        if isinstance(msg, Heartbeat):
            out = self._on_heartbeat(msg, now)
        elif isinstance(msg, LeaderAnnouncement):
            out = self._see_leader(msg.leader, msg.epoch, now, "announcement")
        elif isinstance(msg, StockChanges):
            out = self._on_stock_changes(msg, now)
        elif isinstance(msg, NodeEvent):
            out = self._on_node_event(msg, now)
        else:
            out = []
        return self._logged(out)

    def _on_heartbeat(self, msg: Heartbeat, now: float) -> list[Derived]:
        out: list[Derived] = []
        info = self._node(msg.node)
        previous = self.live.incarnation(msg.node)
        restarted = previous is not None and previous != msg.incarnation
        change = self.live.heard(msg.node, now, msg.incarnation)
        if change == "new":
            out.append(Derived(Kind.NODE_SEEN, now, msg.node, {"incarnation": msg.incarnation}))
        elif change in ("back", "restarted"):
            detail: dict[str, Any] = {"incarnation": msg.incarnation, "restarted": restarted}
            if restarted:
                detail["previous_incarnation"] = previous
            if info.died_at is not None:
                detail["down_s"] = round(now - info.died_at, 3)
            if info.last_beat is not None:
                detail["silent_s"] = round(now - info.last_beat, 3)
            out.append(Derived(Kind.NODE_BACK, now, msg.node, detail))
        if restarted:
            info.restarts += 1
            info.flushes = None
            info.awaiting_catch_up = msg.kind is NodeKind.REPLICA
        info.incarnation = msg.incarnation
        info.last_beat = now
        info.died_at = None
        info.kind = msg.kind
        # Only the status of the kind the node says it is counts.
        info.replica = msg.replica if msg.kind is NodeKind.REPLICA else None
        info.catalog = msg.catalog if msg.kind is NodeKind.CATALOG else None
        info.frontend = msg.frontend if msg.kind is NodeKind.FRONTEND else None
        info.broker = msg.broker if msg.kind is NodeKind.BROKER else None
        if change == "new" and info.replica is not None and info.replica.recovering:
            info.awaiting_catch_up = True
        out += self._figures(info, now, restarted)
        return out

    def _on_stock_changes(self, msg: StockChanges, now: float) -> list[Derived]:
        """The catalog applied entries ``msg.prev + 1`` to ``msg.index``. A
        ``prev`` past the last index heard is a gap; one below it is a catalog
        that applies again what it had published (it lost its last writes, or
        rebuilds): the chain restarts there, with no gap."""
        self.stock_msgs.add(now)
        out = []
        if self.stock_index is not None and msg.prev > self.stock_index:
            out.append(Derived(Kind.STOCK_GAP, now, CATALOG, {
                "expected": self.stock_index + 1, "got": msg.prev + 1, "missed": msg.prev - self.stock_index,
            }))
        self.stock_index = msg.index
        return out

    def _on_node_event(self, msg: NodeEvent, now: float) -> list[Derived]:
        info = self._node(msg.node)
        if isinstance(msg, SocketEvent):
            info.sockets[msg.event] += 1
            self.feed.socket(now, msg.node, msg.socket, msg.event, msg.endpoint)
            return []
        if isinstance(msg, (LeaderElectedEvent, LeaderChangedEvent)):
            return self._see_leader(msg.leader, msg.epoch, now, msg.MSG)
        if isinstance(msg, CaughtUpEvent):
            return self._caught_up(info, msg.index, now, "event")
        if isinstance(msg, CacheFlushedEvent):
            return self._cache_flushed(info, msg.flushes, msg.reason, now)
        if not isinstance(msg, _FOLDED_EVENTS):
            self.feed.add(now, msg.MSG, msg.node, msg.details())
        if isinstance(msg, StoppingEvent) and self.live.mark_dead(msg.node):
            return self._died(info, now, "stopping")
        return []

    def on_socket(self, label: str, event: str, endpoint: str, now: float) -> list[Derived]:
        """An event of the monitor's own SUB socket (to the broker's XPUB)."""
        self.feed.socket(now, MONITOR, label, event, endpoint)
        return self._logged(self._bus_transition(event, endpoint, now))

    def tick(self, now: float) -> list[Derived]:
        """Declare silent nodes dead (see the module docstring for when)."""
        return self._logged(self._expire(now))

    def bus_works(self, now: float) -> bool:
        """True while the SUB socket is (or may be) connected and the broker speaks."""
        return self.sub_up is not False and self.live.is_alive(BROKER, now)

    def note_malformed(self, total: int) -> None:
        """The I/O loop's count of bus messages that failed to decode."""
        self.malformed = total

    # --- judgement ----------------------------------------------------------------

    def _bus_transition(self, event: str, endpoint: str, now: float) -> list[Derived]:
        if event in _UP_EVENTS and self.sub_up is not True:
            detail: dict[str, Any] = {"endpoint": endpoint}
            if self.bus_down_since is not None:
                self.last_gap_s = round(now - self.bus_down_since, 3)
                detail.update(down_s=self.last_gap_s, retries=self.bus_retries)
            self.sub_up, self.bus_down_since, self.bus_retries = True, None, 0
            return [Derived(Kind.BUS_CONNECTED, now, MONITOR, detail)]
        if event == "connect_retried":
            self.bus_retries += 1
        if (event in _DOWN_EVENTS or event == "connect_retried") and self.sub_up is not False:
            self.sub_up, self.bus_down_since = False, now
            self.resume_at = max(self.resume_at, now + self.window_s + SETTLE_S)
            return [Derived(Kind.BUS_DISCONNECTED, now, MONITOR, {"endpoint": endpoint, "event": event})]
        return []

    def _expire(self, now: float) -> list[Derived]:
        out: list[Derived] = []
        if self.live.age(BROKER, now) > self.window_s and self.live.mark_dead(BROKER):
            out += self._died(self._node(BROKER), now, "silent")
        if not self.bus_works(now):
            self.resume_at = max(self.resume_at, now + self.window_s + SETTLE_S)
            return out
        if now < self.resume_at:
            return out
        broker_age = self.live.age(BROKER, now)
        for name in self.live.nodes():
            age = self.live.age(name, now)
            if name != BROKER and age > self.window_s and age - broker_age >= self.window_s \
                    and self.live.mark_dead(name):
                out += self._died(self._node(name), now, "silent")
        return out

    # --- the view ---------------------------------------------------------------

    def snapshot(self, now: float, feed_lines: int = 12) -> Snapshot:
        """Everything the view shows, with rates computed at ``now``."""
        rows = [self._row(info, now) for info in self.nodes.values()]
        requests = [r.rates.get("trades") for r in rows if r.kind is NodeKind.REPLICA and r.state == "alive"]
        lookups = [r.rates.get("lookups") for r in rows if r.kind is NodeKind.FRONTEND and r.state == "alive"]
        catalog = next((r for r in rows if r.kind is NodeKind.CATALOG), None)
        caches = [r.frontend.cache for r in rows if r.frontend is not None and r.frontend.cache is not None]
        hits = sum(c.hits for c in caches)
        misses = sum(c.misses for c in caches)
        bus = "unknown" if self.sub_up is None else ("up" if self.sub_up else "down")
        if bus == "up" and self.live.age(BROKER, now) > self.window_s:
            bus = "silent"
        gates = [r.auth for r in rows if r.auth is not None]
        return Snapshot(
            curve_off=[r.name for r in rows if r.curve is False],
            refused=sum(a.refused for a in gates), failed_handshakes=sum(a.failed_handshakes for a in gates),
            now=now, nodes=rows, leader=self.leader, epoch=self.epoch,
            leader_node=None if self.leader is None else self.replicas.get(self.leader, f"order-{self.leader}"),
            bus=bus, bus_down_s=None if self.bus_down_since is None else now - self.bus_down_since,
            last_gap_s=self.last_gap_s,
            rates={
                "trades": self.txn.per_s(now),
                "requests": _total(requests),
                # Each trade carried out that the catalog applies changes one stock: one invalidation.
                "invalidations": None if catalog is None else catalog.rates.get("trades"),
                "stock_msgs": self.stock_msgs.per_s(now),
                "lookups": _total(lookups),
                "catalog_lookups": None if catalog is None else catalog.rates.get("lookups"),
                "bus": self.bus_msgs.per_s(now),
            },
            hit_rate=hits / (hits + misses) if hits + misses else None,
            topics=dict(self.topics), malformed=self.malformed, feed=self.feed.recent(feed_lines),
        )

    # --- internals --------------------------------------------------------------

    def _node(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        return info

    def _figures(self, info: NodeInfo, now: float, reset: bool) -> list[Derived]:
        """Counters and per-kind facts from a heartbeat's status."""
        out: list[Derived] = []
        if info.replica is not None:
            r = info.replica
            info.count("trades", now, r.trades, reset)
            info.count("reads", now, r.reads, reset)
            info.count("lookups", now, r.lookups, reset)
            self.max_txn = max(self.max_txn, r.last_txn)
            if r.role is ReplicaRole.LEADER:
                self.txn.add(now, self.max_txn)  # one steady series: the leader's beats
                out += self._see_leader(r.id, r.term, now, "heartbeat")
                info.awaiting_catch_up = False
            elif r.leader is not None:
                out += self._see_leader(r.leader, r.term, now, "heartbeat")
            if info.awaiting_catch_up and not r.recovering and r.leader is not None:
                out += self._caught_up(info, r.last_index, now, "heartbeat")
        elif info.catalog is not None:
            c = info.catalog
            info.count("applied", now, c.applied, reset)
            info.count("lookups", now, c.lookups, reset)
            info.count("trades", now, c.trades, reset)
        elif info.frontend is not None:
            cache, backend = info.frontend.cache, info.frontend.backend
            if cache is not None:
                info.count("lookups", now, cache.hits + cache.misses + cache.bypassed, reset)
            else:  # a lookup asks the catalog, or a replica (both when the catalog is behind)
                info.count("lookups", now, backend.catalog_calls + backend.replica_lookups, reset)
            info.count("orders", now, backend.order_calls, reset)
            if cache is not None:
                if info.flushes is None or cache.flushes < info.flushes:
                    info.flushes = cache.flushes
                elif cache.flushes > info.flushes:
                    out += self._cache_flushed(info, cache.flushes, None, now)
        return out

    def _see_leader(self, leader: int | None, epoch: int, now: float, source: str) -> list[Derived]:
        if leader is None:
            return []
        if not (epoch > self.epoch or (self.leader is None and epoch >= self.epoch)):
            return []
        previous, previous_epoch = self.leader, self.epoch
        self.leader, self.epoch = leader, epoch
        node = self.replicas.get(leader, f"order-{leader}")
        return [Derived(Kind.LEADER_CHANGED, now, node, {
            "leader": leader, "epoch": epoch, "previous": previous,
            "previous_epoch": previous_epoch if previous is not None else None, "source": source,
        })]

    def _caught_up(self, info: NodeInfo, index: int, now: float, source: str) -> list[Derived]:
        if not info.awaiting_catch_up and info.last_beat is not None:
            return []
        info.awaiting_catch_up = False
        return [Derived(Kind.CAUGHT_UP, now, info.name, {"index": index, "leader": self.leader, "source": source})]

    def _cache_flushed(self, info: NodeInfo, flushes: int, reason: str | None, now: float) -> list[Derived]:
        if info.flushes is not None and flushes <= info.flushes:
            return []  # reported already (by the event or by an earlier heartbeat)
        info.flushes = flushes
        return [Derived(Kind.CACHE_FLUSHED, now, info.name, {"reason": reason, "flushes": flushes})]

    def _died(self, info: NodeInfo, now: float, reason: str) -> list[Derived]:
        info.died_at = now
        age = self.live.age(info.name, now)
        detail = {"reason": reason, "silent_s": round(age, 3), "incarnation": info.incarnation}
        out = [Derived(Kind.NODE_DEAD, now, info.name, detail)]
        if self.leader is not None and self.replicas.get(self.leader) == info.name:
            out.append(Derived(Kind.LEADER_LOST, now, info.name, {"leader": self.leader, "epoch": self.epoch}))
        return out

    def _logged(self, derived: list[Derived]) -> list[Derived]:
        for d in derived:
            self.feed.add(d.at, d.kind.value, d.node, d.detail)
        return derived

    def _row(self, info: NodeInfo, now: float) -> NodeRow:
        age = self.live.age(info.name, now) if info.last_beat is not None else None
        if age is None:
            state = "unknown"
        elif info.died_at is not None:
            state = "dead"
        else:
            state = "alive" if self.live.is_alive(info.name, now) else "silent"
        lag = None
        leader = self.nodes.get(self.replicas.get(self.leader, "")) if self.leader is not None else None
        leading = leader.replica if leader is not None else None
        # Heartbeats sampled apart can make a lag negative: never below 0.
        if info.replica is not None and leading is not None and state != "unknown":
            lag = max(0, leading.last_index - info.replica.last_index)
        source = None
        if info.catalog is not None:
            c = info.catalog
            commit = max(c.commit, leading.commit if leading is not None else 0)
            lag = max(0, commit - c.applied)
            if c.source is not None:
                source = self.replicas.get(c.source, f"order-{c.source}")
        status = info.replica or info.catalog or info.broker
        auth = None if status is None else status.auth
        curve = auth.curve if auth is not None else (info.frontend.curve if info.frontend is not None else None)
        return NodeRow(
            auth=auth, curve=curve,
            name=info.name, kind=info.kind, state=state, age_s=age,
            down_s=None if info.died_at is None else now - info.died_at,
            incarnation=info.incarnation, restarts=info.restarts,
            replica=info.replica, catalog=info.catalog, frontend=info.frontend,
            rates={k: (r.per_s(now) if state == "alive" else None) for k, r in info.rates.items()},
            lag=lag, sockets=dict(info.sockets), source=source,
        )


def _total(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
