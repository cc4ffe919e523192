"""A deterministic simulation of the order replicas, the catalog and clients.

The replicas are the real pure state machines (:class:`order.replica.Replica`
over :class:`order.log.MemoryLog`); the catalog is the real projection
(:class:`catalog.projection.Projection` over
:class:`catalog.projection.MemoryCatalogStore`), fetching committed entries
from the replicas over the same network; the network is a seeded event queue
that delays, drops, duplicates and reorders messages and can partition
nodes; replicas crash and restart with their durable log (or lose it); the
catalog crashes (losing its last writes, as ``synchronous=NORMAL`` does in a
power cut), pauses, and loses its disk. Every step is a pure function of the
seed, so a failing seed replays exactly (``python -m tests.sim --seed N``).

After every step :meth:`World.check` asserts the promises that can be
checked at that moment: every committed entry is the same everywhere, no
acknowledged trade is lost, and every book (each replica's, and the
catalog's in memory and on its disk) equals the fold of the committed log up
to the index it says. :meth:`World.settle` heals everything and judges the
rest with the same checker the process tests use
(:func:`harness.checker.judge`: identical logs, no gap, no duplicate, every
acknowledgement kept, refusals durable and right, the catalog equal to the
fold of the whole log).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from catalog.projection import MemoryCatalogStore, Projection, Publish, Reply, ToReplica
from common.book import Book, Stock
from common.errors import BrokenFold
from common.protocol import (
    CommittedEntries, Error, ErrorCode, GetOrder, LeaderAnnouncement, Message, OrderInfo, PlaceTrade, StockRow,
    TradeDone,
)
from frontend.leader import LeaderTracker
from harness.checker import FinalState, judge
from order.desk import ToClient
from order.log import MemoryLog
from order.raft import BecameLeader, Flush, Role, SendPeer, Timing
from order.replica import Replica

CATALOG = "catalog"
# Small enough that buys run short now and then: refusals are decided, logged and replayed too.
STOCKS = {"GameStart": 40, "FishCo": 40, "BoarCo": 40}
GENESIS = [StockRow(name, 10.0, quantity, 0) for name, quantity in STOCKS.items()]
# How long a client's attempt may wait before the leader must drop it (the frontend's deadline).
ATTEMPT_DEADLINE_S = 0.5


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
        self.now = 0.0
        self.events: list[_Event] = []
        self.counter = 0
        self.logs = {i: MemoryLog(blank=True) for i in self.ids}  # a new cluster: every disk is new
        self.nodes: dict[int, Replica | None] = {}
        self.catalog_store = MemoryCatalogStore()
        self.catalog: Projection | None = None
        self.catalog_paused_until = 0.0
        self.cut: set[frozenset] = set()
        self.ops: dict[str, Op] = {}
        self.reads: dict[str, Op] = {}  # an order read's reply address -> the acknowledged trade it reads
        self.read_answers = 0  # order reads answered with the order (by a leader or a follower)
        self.leaders: dict[int, int] = {}  # term -> leader id (election safety)
        self.committed: dict[int, Any] = {}  # index -> entry, once committed anywhere
        self.folds: list[dict[str, Stock]] = [{}]  # the fold of the committed log at index k
        self.reference = Book()  # ... folded as far as the committed entries are known without a gap
        self.committed_txn: dict[int, str] = {}  # transaction number -> request id, once committed
        self.checked: dict[int, tuple[Any, int]] = {}  # replica -> (its log, index checked up to)
        self.steps = 0
        self.trace: list[str] | None = [] if trace else None
        self.tracker = LeaderTracker(self.ids)  # the frontend's leader tracking, as the clients' guide
        for i in self.ids:
            self._start(i)
        for i in self.ids:  # the connections come up: every replica says hello to every other
            for p in self.ids:
                if p != i:
                    self._execute(i, self.nodes[i].peer_up(p, self.now))
        self.restart_catalog()

    # --- driving ------------------------------------------------------------

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:9.4f} {text}")

    def _schedule(self, at: float, kind: str, data: Any) -> None:
        self.counter += 1
        heapq.heappush(self.events, _Event(at, self.counter, kind, data))

    def _start(self, i: int) -> None:
        peers = [p for p in self.ids if p != i]
        self.nodes[i] = Replica(i, peers, self.logs[i], self.timing, self.now, genesis=lambda: list(GENESIS))
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

    def crash_catalog(self, lose: int = 0) -> None:
        """The catalog dies; with ``lose``, as in a power cut, its last
        ``lose`` writes are gone too (``synchronous=NORMAL``)."""
        self._note(f"crash catalog, losing {lose} writes")
        self.catalog = None
        self.catalog_store.lose_recent(lose)

    def wipe_catalog(self) -> None:
        """The catalog loses its disk: it comes back blank and rebuilds from the log."""
        self.crash_catalog()
        self._note("wipe catalog")
        self.catalog_store = MemoryCatalogStore()

    def pause_catalog(self, seconds: float) -> None:
        """The catalog hangs (SIGSTOP): what reaches it waits, and so do its timers."""
        self._note(f"pause catalog {seconds:.3f}s")
        self.catalog_paused_until = self.now + seconds

    def restart_catalog(self) -> None:
        if self.catalog is None:
            self._note("start catalog")
            self.catalog = Projection(self.catalog_store, self.ids, wait_s=0.1, timeout_s=0.1, now=self.now)
            self._execute_catalog(self.catalog.start(self.now))
            self._schedule(self.now, "ctick", self.catalog)

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

    def _execute_catalog(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, ToReplica):
                self.send(CATALOG, out.replica, out.msg)
            elif isinstance(out, Reply):
                self.send(CATALOG, out.ref, out.msg)
            elif isinstance(out, Publish):
                self._note(f"catalog applied {out.msg.prev + 1}..{out.msg.index}")

    def step(self) -> bool:
        """Run the next event. :returns: False when none is left."""
        if not self.events:
            return False
        event = heapq.heappop(self.events)
        self.now = max(self.now, event.at)
        if event.kind in ("ctick", "deliver") and self._held_by_pause(event):
            return True
        if event.kind == "ctick":
            if event.data is self.catalog:  # a tick of a catalog that crashed since is dropped
                self._guard_fold(lambda: self._execute_catalog(self.catalog.tick(self.now)))
                due = self.catalog.next_deadline()
                self._schedule(max(self.now + 0.001, min(due if due is not None else 1e9, self.now + 0.05)),
                               "ctick", self.catalog)
        elif event.kind == "tick":
            node = self.nodes.get(event.data)
            if node is not None:
                self._guard_fold(lambda: self._execute(event.data, node.tick(self.now)))
                self._schedule(max(self.now + 0.001, min(node.next_deadline(), self.now + 0.05)), "tick", event.data)
        elif event.kind == "deliver":
            self._deliver(*event.data)
        elif event.kind == "call":
            event.data()
        elif event.kind == "flush":
            node = self.nodes.get(event.data)
            if node is not None:
                self.logs[event.data].flush()
                self._guard_fold(lambda: self._execute(event.data, node.flushed(self.now)))
        self.check()
        return True

    def _held_by_pause(self, event: _Event) -> bool:
        """A paused catalog handles nothing: what is due to it waits until it resumes."""
        if self.now >= self.catalog_paused_until:
            return False
        if event.kind == "ctick" or event.data[1] == CATALOG:
            heapq.heappush(self.events, _Event(self.catalog_paused_until, event.order, event.kind, event.data))
            return True
        return False

    def _guard_fold(self, work) -> None:
        try:
            work()
        except BrokenFold as exc:
            raise Violation(f"a book broke the fold: {exc}") from exc

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
            if self.catalog is not None and isinstance(msg, CommittedEntries):
                catalog = self.catalog
                self._guard_fold(lambda: self._execute_catalog(catalog.on_entries(src, msg, self.now)))
        elif dst == "bus":
            if isinstance(msg, LeaderAnnouncement):
                self.tracker.announce(msg.leader, msg.epoch)
        elif dst in self.reads:
            self._read_reply(dst, src, msg)
        elif isinstance(dst, str):  # a client request id
            self._client_reply(dst, src, msg)
        else:
            node = self.nodes.get(dst)
            if node is None:
                return
            if isinstance(src, str):  # a client or the catalog
                expires = msg.deadline_ms / 1000 if isinstance(msg, PlaceTrade) and msg.deadline_ms else None
                self._guard_fold(lambda: self._execute(dst, node.on_client(src, msg, self.now, expires)))
                self._guard_fold(lambda: self._execute(dst, node.replicate(self.now)))
            else:
                self._guard_fold(lambda: self._execute(dst, node.on_peer(msg, self.now)))
                self._guard_fold(lambda: self._execute(dst, node.replicate(self.now)))

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
        deadline_ms = int((self.now + ATTEMPT_DEADLINE_S) * 1000)
        self.send(op.request_id, target, PlaceTrade(op.request_id, op.name, op.quantity, op.side,
                                                    deadline_ms=deadline_ms))
        if not op.retry:
            op.status = "unknown"
        elif op.attempts < 200:
            self._schedule(self.now + 0.2, "call", lambda: self._attempt(op))
        else:
            op.status = "unknown"

    def read_order(self) -> None:
        """A client reads an acknowledged trade back, from any replica (a
        follower answers what it knows is committed, and sends the rest to
        the leader)."""
        acked = sorted((op for op in self.ops.values() if op.status == "ok"), key=lambda op: op.request_id)
        if not acked:
            return
        op = self.rng.choice(acked)
        ref = f"read-{len(self.reads)}"
        self.reads[ref] = op
        self.send(ref, self.rng.choice(self.ids), GetOrder(op.txn))

    def _read_reply(self, ref: str, src: int, msg: Message) -> None:
        op = self.reads[ref]
        if isinstance(msg, OrderInfo):
            if (msg.txn, msg.name, msg.quantity, msg.side) != (op.txn, op.name, op.quantity, op.side):
                raise Violation(f"replica {src} answered order {op.txn} ({op.request_id}) with {msg}")
            self.read_answers += 1
        elif isinstance(msg, Error) and msg.code not in (ErrorCode.NOT_LEADER, ErrorCode.UNAVAILABLE):
            raise Violation(f"replica {src} answered a read of acknowledged order {op.txn} with {msg.code}")

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
                op.status, op.detail = "fail", msg.code

    # --- invariants ---------------------------------------------------------

    def check(self) -> None:
        """Promises that hold at every instant."""
        self.steps += 1
        full = self.steps % 64 == 0  # now and then, every committed entry again, not only the new ones
        for i, log in self.logs.items():
            node = self.nodes.get(i)
            commit = node.raft.commit if node is not None else 0
            seen_log, upto = self.checked.get(i, (None, 0))
            start = 1 if full or seen_log is not log else upto + 1
            for entry in log.entries(start, commit):
                seen = self.committed.setdefault(entry.index, entry)
                if seen is entry:
                    if entry.trade is not None and entry.trade.txn is not None:
                        self.committed_txn[entry.trade.txn] = entry.trade.request_id
                elif seen != entry:
                    raise Violation(f"replica {i} committed {entry} at {entry.index}, elsewhere {seen}")
            self.checked[i] = (log, max(commit, 0))
        self._extend_folds()
        for op in self.ops.values():
            if op.status == "ok" and self.committed_txn.get(op.txn, op.request_id) != op.request_id:
                raise Violation(f"txn {op.txn} acked for {op.request_id} but committed for "
                                f"{self.committed_txn[op.txn]}")
        for i, node in self.nodes.items():
            if node is not None:
                self._same_as_fold(f"replica {i}'s book", node.book.all(), node.book.applied)
        if self.catalog is not None:
            self._same_as_fold("the catalog", self.catalog.book.all(), self.catalog.book.applied)
        self._same_as_fold("the catalog's disk", self.catalog_store.stocks, self.catalog_store.applied)

    def _extend_folds(self) -> None:
        """Fold the committed entries known without a gap (the reference book)."""
        while len(self.folds) in self.committed:
            try:
                self.reference.apply(self.committed[len(self.folds)])
            except BrokenFold as exc:
                raise Violation(f"the committed log breaks the fold: {exc}") from exc
            self.folds.append(self.reference.all())

    def _same_as_fold(self, who: str, stocks: dict[str, Stock], applied: int) -> None:
        if applied >= len(self.folds):
            raise Violation(f"{who} says it applied the log up to {applied}, beyond what committed "
                            f"({len(self.folds) - 1})")
        if stocks != self.folds[applied]:
            fold = self.folds[applied]
            diff = {n: (stocks.get(n), fold.get(n)) for n in sorted({*stocks, *fold}) if stocks.get(n) != fold.get(n)}
            raise Violation(f"{who} at index {applied} differs from the fold of the log: {diff}")

    def settle(self, horizon: float = 5.0) -> None:
        """Heal, restart everyone, let the cluster converge, check the rest."""
        self.heal()
        self.catalog_paused_until = 0.0
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
        if desk.queue or desk.waiting:
            return False
        last = self.logs[leader[0].me].last_index()
        return (all(n.raft.commit == last and self.logs[n.me].last_index() == last for n in nodes)
                and self.catalog is not None and self.catalog.book.applied == last
                and all(op.status in ("ok", "fail") for op in self.ops.values() if op.retry))

    def _check_final(self) -> None:
        entries = {i: self.logs[i].entries(1, self.logs[i].last_index()) for i in self.ids}
        first = entries[self.ids[0]]
        for i, log in entries.items():  # Raft's log matching: terms and no-ops too, not only the trades
            if log != first:
                raise Violation(f"replica {i}'s log differs from replica {self.ids[0]}'s")
        state = FinalState(
            logs={i: [(e.trade.txn, e.trade.request_id, e.trade.name, e.trade.quantity, e.trade.side,
                       e.trade.status.value) for e in log if e.trade is not None] for i, log in entries.items()},
            initial={row.name: row.quantity for row in first[0].genesis},
            catalog={name: stock.quantity for name, stock in self.catalog_store.stocks.items()},
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
