"""One order replica as a pure state machine: Raft, the book, the desk and the feed.

:class:`Replica` is what the I/O shell (:mod:`order.server`) and the
deterministic simulator drive. Every entry point takes ``now`` and returns
outputs; the ones for the outside world are :class:`order.raft.SendPeer`,
:class:`order.desk.ToClient` and :class:`order.raft.Flush` (make staged
entries durable, then call :meth:`Replica.flushed`), and the signals
:class:`BecameLeader`, :class:`SteppedDown`, :class:`LeaderChanged` and
:class:`CaughtUp` are passed on too so the shell can announce them.
Everything else is consumed here.

Every replica, leader or not, keeps its *book*: the fold of its committed
log (:mod:`common.book`), advanced the moment Raft says more has committed,
and written with the log's next write. From it any replica answers a
lookup; any replica serves the catalog committed entries
(:class:`Feed`), so a catalog can rebuild itself from whichever is up; and
any replica answers an order read of an entry it knows is committed, so
order reads go on without a leader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.protocol import (
    CommittedEntries, Error, ErrorCode, GetOrder, Lookup, Message, PlaceTrade, ReadCommitted, ReplicaStatus,
    StockRow, trade_problem,
)

from .desk import Desk, ToClient, order_info
from .log import LogStore
from .raft import BecameLeader, Committed, Flush, Raft, ReadConfirmed, SteppedDown, Timing

# Entries read from the log at once while the book catches up.
APPLY_PAGE = 4096
# The most entries one CommittedEntries carries, and the most reads held at once.
FEED_PAGE_MAX = 1000
FEED_PARKED_MAX = 16
# A held read is answered this long after the first entry it waits for commits, so that
# the commits that follow closely ride along: under load the catalog then fetches, applies
# and publishes once for several commits, not once for each (its followers see a change
# this much later; the frontend that placed a trade shows it at once from the reply).
FEED_LINGER_S = 0.002


@dataclass
class Counters:
    """What the I/O shell counts since the process started (for :meth:`Replica.status`)."""

    trades: int = 0
    reads: int = 0
    lookups: int = 0
    bad_requests: int = 0
    dropped_sends: int = 0


class Feed:
    """Committed entries for the catalog, by index (a long poll).

    A :class:`ReadCommitted` for entries after ``after`` is answered at once
    when some have committed, else held until they do (and then
    :data:`FEED_LINGER_S` more) or its wait runs out.
    """

    def __init__(self, raft: Raft, log: LogStore) -> None:
        self.raft = raft
        self.log = log
        self.parked: list[tuple[Any, ReadCommitted, float]] = []

    def read(self, ref: Any, msg: ReadCommitted, now: float) -> list:
        if self.raft.commit > msg.after or msg.wait_ms <= 0 or len(self.parked) >= FEED_PARKED_MAX:
            return [self._answer(ref, msg)]
        self.parked.append((ref, msg, now + msg.wait_ms / 1000))
        return []

    def on_commit(self, index: int, now: float) -> list:
        """Entries up to ``index`` committed: the reads waiting for them are answered shortly."""
        soon = now + FEED_LINGER_S
        self.parked = [(ref, msg, min(until, soon) if msg.after < index else until)
                       for ref, msg, until in self.parked]
        return []

    def tick(self, now: float) -> list:
        if not self.parked or self.next_deadline() > now:
            return []
        due = [p for p in self.parked if p[2] <= now]
        self.parked = [p for p in self.parked if p[2] > now]
        return [self._answer(ref, msg) for ref, msg, _ in due]

    def next_deadline(self) -> float | None:
        return min((until for _, _, until in self.parked), default=None)

    def _answer(self, ref: Any, msg: ReadCommitted) -> ToClient:
        last = min(self.raft.commit, msg.after + max(1, min(msg.limit, FEED_PAGE_MAX)))
        entries = self.log.entries(msg.after + 1, last) if last > msg.after else []
        return ToClient(ref, CommittedEntries(entries=entries, commit=self.raft.commit, leader=self.raft.leader))


class Replica:
    """Consensus, book and trading for replica ``me``.

    :param peers: the other replicas' ids.
    :param genesis: the initial stocks (read only if this replica becomes the
        first leader of a new cluster).
    """

    def __init__(self, me: int, peers: list[int], log: LogStore, timing: Timing, now: float,
                 genesis: Callable[[], list[StockRow]] = list) -> None:
        self.me = me
        self.log = log
        self.book = log.load_book()
        self.raft = Raft(me, peers, log, timing, now, commit=self.book.applied)
        self.desk = Desk(self.raft, log, self.book, genesis)
        self.feed = Feed(self.raft, log)
        self.storage_problem: str | None = None

    # --- inputs ---------------------------------------------------------------

    def on_peer(self, msg: Message, now: float) -> list:
        """A replication message. What it makes the desk decide (trades that
        waited for the barrier) is staged, not sent: the shell calls
        :meth:`replicate` once it has read every message waiting, so a reply
        read between two trades does not split their batch."""
        return self._route(self.raft.handle(msg, now), now, replicate=False)

    def on_client(self, ref: Any, msg: Message, now: float, expires: float | None = None) -> list:
        """A request from a frontend or the catalog. Trades decided here are
        staged, not sent: the shell calls :meth:`replicate` once it has read
        every message waiting (group commit).

        :param expires: a trade's deadline on the shell's clock (None: none).
        """
        if isinstance(msg, PlaceTrade):
            problem = trade_problem(msg.request_id, msg.name, msg.quantity, msg.side)
            if problem:
                return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, problem))]
            if not self.raft.is_leader():
                return [ToClient(ref, self.not_leader())]
            return self._route(self.desk.place(ref, msg, now, expires), now, replicate=False)
        if isinstance(msg, GetOrder):
            if msg.txn < 0:
                return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, "txn must not be negative"))]
            if not self.raft.is_leader():
                return [ToClient(ref, self.committed_order(msg.txn))]
            return self._route(self.desk.get_order(ref, msg, now), now)
        if isinstance(msg, Lookup):
            return [ToClient(ref, self.lookup(msg))]
        if isinstance(msg, ReadCommitted):
            if msg.after < 0 or msg.limit < 1:
                return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, "after must not be negative, limit positive"))]
            return self.feed.read(ref, msg, now)
        return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not an order-service request"))]

    def replicate(self, now: float) -> list:
        """Send the entries decided since the last call, then make them durable."""
        return self._route(self.raft.replicate(now), now)

    def flushed(self, now: float) -> list:
        """The shell made the staged log entries durable (after a Flush output)."""
        return self._route(self.raft.flushed(now), now)

    def peer_down(self, peer: int, now: float) -> list:
        return self._route(self.raft.peer_down(peer, now), now)

    def peer_up(self, peer: int, now: float) -> list:
        return self._route(self.raft.peer_up(peer, now), now)

    def storage_failed(self, problem: str, now: float) -> list:
        """The disk refused a write (``problem`` says which and why): stop
        leading, refuse what needs a write, keep answering the rest."""
        self.storage_problem = problem
        return self._route(self.raft.storage_failed(now), now)

    def storage_recovered(self, now: float) -> list:
        self.storage_problem = None
        return self._route(self.raft.storage_recovered(now), now)

    def tick(self, now: float) -> list:
        return self._route([*self.raft.tick(now), *self.desk.tick(now), *self.feed.tick(now)], now)

    # --- queries ----------------------------------------------------------------

    def lookup(self, msg: Lookup) -> Message:
        """A stock from the book, if the book has reached ``msg.min_index``."""
        book = self.book
        if not book.started or book.applied < msg.min_index:
            return Error(ErrorCode.BEHIND, f"order replica {self.me} has applied the log up to {book.applied}, "
                                           f"not {msg.min_index}", index=book.applied)
        stock = book.get(msg.name)
        if stock is None:
            return Error(ErrorCode.STOCK_NOT_FOUND, "stock not found")
        return stock.info(book.applied)

    def committed_order(self, txn: int) -> Message:
        """An order read at a replica that does not lead: a committed entry
        never changes, so one this replica knows is committed is answered
        here; anything else is for the leader (only it may say "no such
        order", once it has confirmed it still leads)."""
        entry = self.log.by_txn(txn)
        if entry is not None and entry.trade is not None and entry.index <= self.raft.commit:
            return order_info(entry)
        return self.not_leader()

    def next_deadline(self) -> float:
        times = [t for t in (self.desk.next_deadline(), self.feed.next_deadline()) if t is not None]
        return min([self.raft.next_deadline(), *times])

    def not_leader(self) -> Error:
        leader = self.raft.leader if self.raft.leader != self.me else None
        why = f" ({self.storage_problem})" if self.storage_problem else ""
        return Error(ErrorCode.NOT_LEADER, f"order replica {self.me} does not lead{why}", leader=leader,
                     epoch=self.raft.term)

    def status(self, counters: Counters | None = None) -> ReplicaStatus:
        """The state worth showing: the heartbeat's figures (the simulator
        prints them too), Raft's and the desk's, with the shell's ``counters``."""
        raft, desk, c = self.raft, self.desk, counters or Counters()
        return ReplicaStatus(
            id=self.me, role=raft.role, term=raft.term, leader=raft.leader, commit=raft.commit,
            last_index=raft.log.last_index(), recovering=raft.recovering, down=sorted(raft.down),
            ready=desk.ready, queued=len(desk.queue), awaiting=sum(len(w) for w in desk.waiting.values()),
            next_txn=desk.next_txn, last_txn=raft.log.last_txn(), applied=self.book.applied,
            trades=c.trades, reads=c.reads, lookups=c.lookups, bad_requests=c.bad_requests, dropped_sends=c.dropped_sends,
            blank=raft.blank, storage="ok" if self.storage_problem is None else "full",
            storage_detail=self.storage_problem,
        )

    # --- internals ------------------------------------------------------------

    def _apply(self, index: int) -> None:
        """Fold the committed entries up to ``index`` into the book (a broken
        invariant raises :class:`common.book.BrokenFold`: never guess)."""
        while self.book.applied < index:
            last = min(index, self.book.applied + APPLY_PAGE)
            for entry in self.log.entries(self.book.applied + 1, last):
                self.book.apply(entry)
        self.log.save_book(self.book)

    def _route(self, outputs: list, now: float, replicate: bool = True) -> list:
        """Feed Raft's signals to the book, the desk and the feed (and what
        the desk stages back to Raft) until only outputs for the shell remain.

        One :class:`Flush` at most, and last: every message of this step (the
        entries for the followers, replies) is on its way before the shell
        blocks in the fsync."""
        result = []
        flush = None
        work = list(outputs)
        while True:
            while work:
                item = work.pop(0)
                if isinstance(item, BecameLeader):
                    work.extend(self.desk.start(item.term, now))
                    result.append(item)
                elif isinstance(item, SteppedDown):
                    work.extend(self.desk.stop(self.not_leader()))
                    result.append(item)
                elif isinstance(item, Committed):
                    self._apply(item.index)
                    work.extend(self.desk.on_commit(item.index, now))
                    self.feed.on_commit(item.index, now)
                elif isinstance(item, ReadConfirmed):
                    work.extend(self.desk.on_read_confirmed(item.probe))
                elif isinstance(item, Flush):
                    flush = item
                else:
                    result.append(item)
            if not replicate:
                break
            work = self.raft.replicate(now)  # what the desk staged on the way (a barrier, queued trades)
            if not work:
                break
        if flush is not None:
            result.append(flush)
        return result
