"""A deterministic simulation of the order replicas, the catalog and clients.

The replicas are the real pure state machines (:class:`order.replica.Replica`
over :class:`order.log.MemoryLog`); the catalog is the real catalog
(:class:`catalog.rules.Catalog`: trading rule, journal, fence, idempotency)
over :class:`catalog.rules.MemoryCatalogStore`, and it crashes and restarts
from that store too; the network is a seeded event queue that delays,
drops, duplicates and reorders messages and can partition nodes; replicas
crash and restart with their durable log. Every step is a pure function of
the seed, so a failing seed replays exactly (``python -m tests.sim --seed N``).

After every step :meth:`World.check` asserts the promises that can be
checked at that moment; :meth:`World.settle` heals everything and judges the
rest with the same checker the process tests use
(:func:`harness.checker.judge`: conservation, identical logs, no gap, no
duplicate, every acknowledgement kept).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from catalog.rules import Catalog, MemoryCatalogStore, Stock
from common.protocol import ErrorCode, LeaderAnnouncement, Message, PlaceTrade, TradeDone, Error
from frontend.leader import LeaderTracker
from harness.checker import FinalState, judge
from order.desk import ToCatalog, ToClient
from order.log import MemoryLog
from order.raft import BecameLeader, Flush, Role, SendPeer, Timing
from order.replica import Replica

CATALOG = "catalog"
STOCKS = {"GameStart": 100, "FishCo": 100, "BoarCo": 100}


class Violation(AssertionError):
    """A promise broke; the message says which and where."""


@dataclass
class NetConfig:
    """Fault rates of the simulated network (per message)."""

    min_delay: float = 0.0002
    max_delay: float = 0.003
    drop: float = 0.01
    duplicate: float = 0.01


@dataclass
class Op:
    """One client operation, recorded the way Jepsen does."""

    request_id: str
    name: str
    quantity: int
    side: str
    status: str = "invoked"  # invoked, ok, fail, unknown
    txn: int | None = None
    attempts: int = 0
    retry: bool = True  # False: sent once, never retried, its fate unknown
    detail: str = ""

    @property
    def key(self) -> str:
        """The request id, under the name the history checker reads."""
        return self.request_id


@dataclass(order=True)
class _Event:
    at: float
    order: int
    kind: str = field(compare=False)
    data: Any = field(compare=False)


class World:
    """Replicas, a catalog, a network and clients, driven by one seed.

    :param trace: keep a human-readable trace of every event (for replays).
    """

    def __init__(self, seed: int, replicas: int = 3, net: NetConfig | None = None, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.net = net or NetConfig()
        self.ids = list(range(1, replicas + 1))
        self.timing = Timing(heartbeat_s=0.05, election_s=0.15, rank_step_s=0.025)
        self.catalog_s = 0.1
        self.now = 0.0
        self.events: list[_Event] = []
        self.counter = 0
        self.logs = {i: MemoryLog(blank=True) for i in self.ids}  # a new cluster: every disk is new
        self.nodes: dict[int, Replica | None] = {}
        self.catalog_store = MemoryCatalogStore({n: Stock(n, 10.0, q, 0, 1) for n, q in STOCKS.items()})
        self.catalog: Catalog | None = Catalog(self.catalog_store)
        self.cut: set[frozenset] = set()
        self.ops: dict[str, Op] = {}
        self.leaders: dict[int, int] = {}  # term -> leader id (election safety)
        self.committed: dict[int, Any] = {}  # index -> entry, once committed anywhere
        self.trace: list[str] | None = [] if trace else None
        self.tracker = LeaderTracker(self.ids)  # the frontend's leader tracking, as the clients' guide
        for i in self.ids:
            self._start(i)
        for i in self.ids:  # the connections come up: every replica says hello to every other
            for p in self.ids:
                if p != i:
                    self._execute(i, self.nodes[i].peer_up(p, self.now))

    # --- driving ------------------------------------------------------------

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:9.4f} {text}")

    def _schedule(self, at: float, kind: str, data: Any) -> None:
        self.counter += 1
        heapq.heappush(self.events, _Event(at, self.counter, kind, data))

    def _start(self, i: int) -> None:
        peers = [p for p in self.ids if p != i]
        self.nodes[i] = Replica(i, peers, self.logs[i], self.timing, self.catalog_s, self.now)
        self._note(f"start {i} term={self.logs[i].term} last={self.logs[i].last_index()}")
        self._schedule(self.now, "tick", i)

    def crash(self, i: int) -> None:
        if self.nodes.get(i) is not None:
            self._note(f"crash {i}")
            self.nodes[i] = None
            self.logs[i].lose_unflushed()
            for p in self.ids:  # the OS closes its connections: peers see it at once
                node = self.nodes.get(p)
                if node is not None:
                    self._execute(p, node.peer_down(i, self.now))

    def wipe(self, i: int) -> None:
        """Replica ``i`` loses its disk: it crashes, and comes back (at
        :meth:`restart`) with a new, empty one, its log and votes forgotten."""
        self.crash(i)
        self._note(f"wipe {i}")
        self.logs[i] = MemoryLog(blank=True)

    def restart(self, i: int) -> None:
        if self.nodes.get(i) is None:
            self._start(i)
            for p in self.ids:  # the connections come up both ways, and say so
                node = self.nodes.get(p)
                if node is not None and p != i:
                    self._execute(p, node.peer_up(i, self.now))
                    self._execute(i, self.nodes[i].peer_up(p, self.now))

    def crash_catalog(self) -> None:
        """The catalog dies: what it committed stays in its store."""
        self._note("crash catalog")
        self.catalog = None

    def restart_catalog(self) -> None:
        if self.catalog is None:
            self._note("start catalog")
            self.catalog = Catalog(self.catalog_store)

    def partition(self, a: Any, b: Any) -> None:
        self._note(f"cut {a}-{b}")
        self.cut.add(frozenset((a, b)))

    def isolate(self, a: Any) -> None:
        """Cut ``a`` from every other node, the catalog and the clients' bus."""
        for other in [*self.ids, CATALOG, "bus"]:
            if other != a:
                self.cut.add(frozenset((a, other)))
        self._note(f"isolate {a}")

    def heal(self) -> None:
        self._note("heal")
        self.cut.clear()

    def send(self, src: Any, dst: Any, msg: Message) -> None:
        if frozenset((src, dst)) in self.cut or self.rng.random() < self.net.drop:
            return
        copies = 2 if self.rng.random() < self.net.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(self.net.min_delay, self.net.max_delay)
            self._schedule(self.now + delay, "deliver", (src, dst, msg))

    def _execute(self, i: int, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, SendPeer):
                self.send(i, out.peer, out.msg)
            elif isinstance(out, ToCatalog):
                self.send(i, CATALOG, out.msg)
            elif isinstance(out, ToClient):
                self.send(i, out.ref, out.msg)
            elif isinstance(out, Flush):
                # The fsync takes a while; a crash before it loses the staged entries.
                self._schedule(self.now + self.rng.uniform(0.0001, 0.001), "flush", i)
            elif isinstance(out, BecameLeader):
                self._note(f"leader {i} term={out.term}")
                if self.leaders.setdefault(out.term, i) != i:
                    raise Violation(f"two leaders in term {out.term}: {self.leaders[out.term]} and {i}")
                self.send(i, "bus", LeaderAnnouncement(leader=i, epoch=out.term, endpoint=""))

    def step(self) -> bool:
        """Run the next event. :returns: False when none is left."""
        if not self.events:
            return False
        event = heapq.heappop(self.events)
        self.now = max(self.now, event.at)
        if event.kind == "tick":
            node = self.nodes.get(event.data)
            if node is not None:
                self._execute(event.data, node.tick(self.now))
                self._schedule(max(self.now + 0.001, min(node.next_deadline(), self.now + 0.05)), "tick", event.data)
        elif event.kind == "deliver":
            self._deliver(*event.data)
        elif event.kind == "call":
            event.data()
        elif event.kind == "flush":
            node = self.nodes.get(event.data)
            if node is not None:
                self.logs[event.data].flush()
                self._execute(event.data, node.flushed(self.now))
        self.check()
        return True

    def _deliver(self, src: Any, dst: Any, msg: Message) -> None:
        if frozenset((src, dst)) in self.cut:
            return
        if self.trace is not None:
            self._note(f"{src} -> {dst} {_brief(msg)}")
        op = self.ops.get(dst) if isinstance(dst, str) else None
        if op is not None and not op.retry and op.status == "unknown" and isinstance(msg, TradeDone):
            op.status, op.txn = "ok", msg.txn  # a fire-and-forget trade that did get its answer
            return
        if dst == CATALOG:
            if self.catalog is not None:
                reply, _changes = self.catalog.handle(msg)
                self.send(CATALOG, src, reply)
        elif dst == "bus":
            if isinstance(msg, LeaderAnnouncement):
                self.tracker.announce(msg.leader, msg.epoch)
        elif isinstance(dst, str):  # a client request id
            self._client_reply(dst, src, msg)
        else:
            node = self.nodes.get(dst)
            if node is None:
                return
            if src == CATALOG:
                self._execute(dst, node.on_catalog(msg, self.now))
            elif isinstance(src, str):
                self._execute(dst, node.on_client(src, msg, self.now))
            else:
                self._execute(dst, node.on_peer(msg, self.now))

    def run_until(self, t: float) -> None:
        while self.events and self.events[0].at <= t:
            self.step()
        self.now = max(self.now, t)

    # --- clients ------------------------------------------------------------

    def place(self, request_id: str, name: str, quantity: int, side: str, retry: bool = True) -> None:
        """A client places a trade and, if ``retry``, retries it with the same
        id until it settles (as the frontend does)."""
        op = self.ops.setdefault(request_id, Op(request_id, name, quantity, side, retry=retry))
        self._attempt(op)

    def _attempt(self, op: Op) -> None:
        if op.status in ("ok", "fail"):
            return
        op.attempts += 1
        candidates = self.tracker.candidates()
        target = candidates[0] if self.tracker.leader is not None else self.rng.choice(candidates)
        self.send(op.request_id, target, PlaceTrade(op.request_id, op.name, op.quantity, op.side))
        if not op.retry:
            op.status = "unknown"
        elif op.attempts < 200:
            self._schedule(self.now + 0.2, "call", lambda: self._attempt(op))
        else:
            op.status = "unknown"

    def _client_reply(self, request_id: str, src: int, msg: Message) -> None:
        op = self.ops.get(request_id)
        if op is None:
            return
        if isinstance(msg, TradeDone):
            if op.status == "ok" and op.txn != msg.txn:
                raise Violation(f"{request_id} acknowledged twice with txn {op.txn} and {msg.txn}")
            if op.status == "fail":
                raise Violation(f"{request_id} failed, then succeeded as txn {msg.txn}")
            op.status, op.txn = "ok", msg.txn
        elif isinstance(msg, Error):
            if msg.code == ErrorCode.NOT_LEADER:
                if not self.tracker.announce(msg.leader, msg.epoch or 0):
                    self.tracker.failed(src)
            elif msg.code in (ErrorCode.NOT_ENOUGH_STOCK, ErrorCode.STOCK_NOT_FOUND):
                if op.status == "ok":
                    raise Violation(f"{request_id} succeeded as txn {op.txn}, then failed: {msg.code}")
                op.status = "fail"

    # --- invariants ---------------------------------------------------------

    def check(self) -> None:
        """Promises that hold at every instant."""
        for i, log in self.logs.items():
            node = self.nodes.get(i)
            commit = node.raft.commit if node is not None else 0
            for entry in log.entries(1, commit):
                seen = self.committed.setdefault(entry.index, entry)
                if seen != entry:
                    raise Violation(f"replica {i} committed {entry} at {entry.index}, elsewhere {seen}")
        for op in self.ops.values():
            if op.status == "ok":
                for i, log in self.logs.items():
                    entry = log.by_txn(op.txn)
                    node = self.nodes.get(i)
                    if entry is not None and node is not None and entry.index <= node.raft.commit:
                        if entry.trade.request_id != op.request_id:
                            raise Violation(f"txn {op.txn} acked for {op.request_id} but replica {i} "
                                            f"committed {entry.trade.request_id}")

    def settle(self, horizon: float = 5.0) -> None:
        """Heal, restart everyone, let the cluster converge, check the rest."""
        self.heal()
        self.restart_catalog()
        for i in self.ids:
            self.restart(i)
        for op in self.ops.values():
            if op.status in ("invoked", "unknown") and op.retry:
                op.status, op.attempts = "invoked", 0
                self._attempt(op)
        deadline = self.now + horizon
        while self.now < deadline:
            self.run_until(self.now + 0.05)
            if self._converged():
                break
        else:
            raise Violation(f"no convergence within {horizon}s: {self.describe()}")
        self._check_final()

    def _converged(self) -> bool:
        nodes = [self.nodes[i] for i in self.ids]
        leader = [n for n in nodes if n.raft.role is Role.LEADER]
        if len(leader) != 1 or not leader[0].desk.ready:
            return False
        desk = leader[0].desk
        if desk.batches or desk.held or desk.queue or desk.awaiting:
            return False
        last = self.logs[leader[0].me].last_index()
        return (all(n.raft.commit == last and self.logs[n.me].last_index() == last for n in nodes)
                and all(op.status in ("ok", "fail") for op in self.ops.values() if op.retry))

    def _check_final(self) -> None:
        entries = {i: self.logs[i].entries(1, self.logs[i].last_index()) for i in self.ids}
        first = entries[self.ids[0]]
        for i, log in entries.items():  # Raft's log matching: terms and no-ops too, not only the trades
            if log != first:
                raise Violation(f"replica {i}'s log differs from replica {self.ids[0]}'s")
        state = FinalState(
            logs={i: [(e.trade.txn, e.trade.request_id, e.trade.name, e.trade.quantity, e.trade.side)
                      for e in log if e.trade is not None] for i, log in entries.items()},
            stocks={name: stock.quantity for name, stock in self.catalog_store.stocks.items()},
            journal=[(j.seq, j.request_id, j.name, j.quantity, j.side) for j in self.catalog_store.applied],
            initial=dict(STOCKS),
        )
        broken = judge(state, list(self.ops.values()))
        if broken:
            raise Violation("; ".join(f"{v.promise}: {v.message}" for v in broken))

    def describe(self) -> str:
        return "; ".join(
            f"{i}: down" if self.nodes.get(i) is None else f"{i}: {self.nodes[i].status()}" for i in self.ids
        )


def _brief(msg: Message) -> str:
    """One line for the trace: the message name and its small fields."""
    fields = []
    for name in getattr(msg, "__dataclass_fields__", {}):
        value = getattr(msg, name)
        if isinstance(value, list):
            value = f"[{len(value)}]"
        elif isinstance(value, Message):
            value = value.MSG
        fields.append(f"{name}={value}")
    return f"{msg.MSG} " + " ".join(fields)
