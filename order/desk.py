"""The leader's trading desk: from a placed trade to an acknowledged order, pure.

The order log is the only place a trade becomes durable; the stocks are a
fold of it (:mod:`common.book`). The desk decides each trade, appends the
decision to the log and answers once a majority holds it. The full argument
is in docs/REPLICATION.md:

1. **Barrier first.** A new leader commits an entry of its own term before
   it decides anything: the genesis (the initial stocks) for the first leader
   of a new cluster, a no-op otherwise. Once it commits, every entry of
   earlier leaders has committed and is folded into the replica's book, so
   the desk starts from a book that holds the whole history. Trades and reads
   that arrive meanwhile wait.
2. **Decide on the draft, answer on commit.** The desk decides on its
   *draft*: the committed book plus the entries it has proposed itself and
   not yet seen commit. A trade the draft can carry out takes the next
   transaction number; a buy of more than the draft holds is logged as a
   refusal. Either way the answer leaves only when the entry has committed: a
   decision is never answered on state that could still be lost (its entry
   comes after the entries it saw, so if they are lost, it is lost with
   them). A stock the genesis does not list is refused at once: the list of
   stocks never changes.
3. **Request ids.** A retry finds its entry in the log by request id:
   committed, it gets the first result back (the same transaction number,
   the same refusal); not yet, it waits for the commit. A request id reused
   for another trade gets ``key_reused``, also once that entry has committed.
4. **Deadlines.** A trade carries its frontend's deadline; one still
   waiting (for the barrier) when it passes is dropped, never carried out.

States::

    idle --leader of term T--> starting (barrier proposed) --barrier committed--> ready
    starting / ready --stepped down--> idle (every waiter told "not leader")

Like :mod:`order.raft`, this imports no socket and reads no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.book import Book, settle
from common.protocol import (
    Error, ErrorCode, GetOrder, LogEntry, Message, OrderInfo, PlaceTrade, StockRow, TradeDone, TradeRecord,
    TradeStatus,
)

from .log import LogStore
from .raft import Raft

# Trades waiting at once (queued for the barrier, or for their entry's commit).
QUEUE_MAX = 10_000
READS_MAX = 10_000

NOT_ENOUGH_STOCK = Error(ErrorCode.NOT_ENOUGH_STOCK, "Not enough stock")
STOCK_NOT_FOUND = Error(ErrorCode.STOCK_NOT_FOUND, "stock not found")
KEY_REUSED = Error(ErrorCode.KEY_REUSED, "this request id was already used for a different trade")
DEADLINE = Error(ErrorCode.DEADLINE, "the trade's deadline passed before it was proposed: it was not carried out")


@dataclass(frozen=True)
class ToClient:
    """Reply to the request identified by ``ref`` (a ROUTER envelope)."""

    ref: Any
    msg: Message


@dataclass(frozen=True)
class Waiter:
    """A frontend's request waiting for a trade's entry to commit, or for the
    desk to be ready. ``expires``: the frontend's deadline (None: none)."""

    ref: Any
    msg: PlaceTrade
    expires: float | None = None


class Desk:
    """The trade pipeline of a replica while it leads.

    :param raft: the replica's consensus state (the desk proposes through it).
    :param book: the replica's book, the fold of its committed log (the
        replica folds each commit into it before it tells the desk).
    :param genesis: the initial stocks, for the first leader of a new cluster.
    """

    def __init__(self, raft: Raft, log: LogStore, book: Book,
                 genesis: Callable[[], list[StockRow]]) -> None:
        self.raft = raft
        self.log = log
        self.book = book
        self.genesis = genesis
        self.epoch: int | None = None
        self.ready = False
        self.barrier = 0  # the index of this term's first entry
        self.draft: Book | None = None  # the book plus our uncommitted decisions (ready only)
        self.queue: deque[Waiter] = deque()  # waiting for the barrier
        self.waiting: dict[int, list[Waiter]] = {}  # entry index -> requests waiting for its commit
        self.next_txn = 0
        self.reads: list[tuple[int, Any, int]] = []
        self.confirmed_probe = 0

    # --- leadership -----------------------------------------------------------

    def start(self, term: int, now: float) -> list:
        """This replica now leads ``term``: propose the barrier."""
        self.epoch = term
        self.ready = False
        self.draft = None
        self.next_txn = self.log.last_txn() + 1
        genesis = self.genesis() if self.log.last_index() == 0 else None
        entries = self.raft.stage([None], genesis=genesis)
        self.barrier = entries[0].index if entries else 0
        return []

    def stop(self, refusal: Error) -> list:
        """This replica stopped leading: every waiter is told so (it retries
        on the new leader, where its request id finds its entry if it committed)."""
        out = [ToClient(w.ref, refusal) for w in self.queue]
        out += [ToClient(w.ref, refusal) for waiters in self.waiting.values() for w in waiters]
        out += [ToClient(ref, refusal) for _, ref, _ in self.reads]
        self.epoch = None
        self.ready = False
        self.draft = None
        self.queue.clear()
        self.waiting.clear()
        self.reads.clear()
        self.confirmed_probe = 0
        return out

    # --- requests from frontends ----------------------------------------------

    def place(self, ref: Any, msg: PlaceTrade, now: float, expires: float | None = None) -> list:
        """A trade from a frontend: decided now if the desk is ready, else queued.

        :param expires: when the frontend gives up (the shell's clock); None: never.
        """
        waiter = Waiter(ref, msg, expires)
        if self.ready:
            return self._decide(waiter, now)
        if len(self.queue) >= QUEUE_MAX:
            return [ToClient(ref, Error(ErrorCode.UNAVAILABLE, "the order leader is overloaded, retry later"))]
        self.queue.append(waiter)
        return []

    def get_order(self, ref: Any, msg: GetOrder, now: float) -> list:
        entry = self.log.by_txn(msg.txn)
        if entry is not None and entry.index <= self.raft.commit:
            return [ToClient(ref, order_info(entry))]
        if len(self.reads) >= READS_MAX:
            return [ToClient(ref, Error(ErrorCode.UNAVAILABLE, "too many reads in flight, retry later"))]
        # "No such order" needs proof that we still lead and our log is current.
        probe, out = self.raft.read_barrier(now)
        self.reads.append((probe, ref, msg.txn))
        return out

    # --- raft signals -----------------------------------------------------------

    def on_commit(self, index: int, now: float) -> list:
        """Entries up to ``index`` committed (and are folded into the book)."""
        out: list = []
        if self.epoch is None:
            return out
        if not self.ready and self.barrier and index >= self.barrier:
            self.ready = True
            self.draft = self.book.child()
            queued, self.queue = self.queue, deque()
            for waiter in queued:
                out.extend(self._decide(waiter, now))
        for idx in sorted(i for i in self.waiting if i <= index):
            waiters = self.waiting.pop(idx)
            entry = self.log.entries(idx, idx)[0]
            out.extend(ToClient(w.ref, self._outcome(entry, w.msg)) for w in waiters)
        if self.draft is not None and self.draft.applied <= self.book.applied:
            self.draft = self.book.child()  # every decision committed: the draft is the book again
        self._answer_reads(out)
        return out

    def on_read_confirmed(self, probe: int) -> list:
        out: list = []
        if probe > self.confirmed_probe:
            self.confirmed_probe = probe
            self._answer_reads(out)
        return out

    def tick(self, now: float) -> list:
        """Drop the queued trades whose deadline passed: never carried out.
        A retry whose request id the log already holds is not dropped: its
        first attempt was proposed in time, and it waits for that entry."""
        due = self.next_deadline()
        if due is None or due > now:
            return []
        out, kept = [], deque()
        for waiter in self.queue:
            if waiter.expires is None or waiter.expires > now:
                kept.append(waiter)
            elif self.log.by_request(waiter.msg.request_id) is not None:
                kept.append(Waiter(waiter.ref, waiter.msg))  # decided when the desk is ready, from the log
            else:
                out.append(ToClient(waiter.ref, DEADLINE))
        self.queue = kept
        return out

    def next_deadline(self) -> float | None:
        times = [w.expires for w in self.queue if w.expires is not None]
        return min(times) if times else None

    # --- internals ------------------------------------------------------------

    def _decide(self, waiter: Waiter, now: float) -> list:
        msg = waiter.msg
        entry = self.log.by_request(msg.request_id)
        if entry is not None:  # a retry: the first decision stands
            if entry.index <= self.raft.commit:
                return [ToClient(waiter.ref, self._outcome(entry, msg))]
            self.waiting.setdefault(entry.index, []).append(waiter)
            return []
        if waiter.expires is not None and waiter.expires <= now:
            return [ToClient(waiter.ref, DEADLINE)]
        if len(self.waiting) >= QUEUE_MAX:
            return [ToClient(waiter.ref, Error(ErrorCode.UNAVAILABLE, "the order leader is overloaded, retry later"))]
        status = settle(self.draft.get(msg.name), msg.quantity, msg.side)
        if status is TradeStatus.STOCK_NOT_FOUND:
            return [ToClient(waiter.ref, STOCK_NOT_FOUND)]
        txn = None
        if status is TradeStatus.OK:
            txn, self.next_txn = self.next_txn, self.next_txn + 1
        record = TradeRecord(request_id=msg.request_id, name=msg.name, quantity=msg.quantity, side=msg.side,
                             txn=txn, status=status)
        entries = self.raft.stage([record])
        if not entries:  # we no longer lead (cannot happen while the desk runs, but never guess)
            return []
        self.draft.apply(entries[0])
        self.waiting.setdefault(entries[0].index, []).append(waiter)
        return []

    def _outcome(self, entry: LogEntry, msg: PlaceTrade) -> Message:
        """The answer to ``msg`` now that ``entry`` (its request id's) has committed."""
        t = entry.trade
        if t is None or (t.name, t.quantity, t.side) != (msg.name, msg.quantity, msg.side):
            return KEY_REUSED
        if t.status is not TradeStatus.OK:
            return NOT_ENOUGH_STOCK
        stock = self.book.get(t.name)
        return TradeDone(txn=t.txn, name=t.name, quantity=t.quantity, side=t.side, index=entry.index,
                         stock=None if stock is None else stock.info(self.book.applied))

    def _answer_reads(self, out: list) -> None:
        if not self.reads or not self.ready:
            return
        keep = []
        for read in self.reads:
            read_probe, ref, txn = read
            entry = self.log.by_txn(txn)
            if entry is not None and entry.index <= self.raft.commit:
                out.append(ToClient(ref, order_info(entry)))
            elif read_probe > self.confirmed_probe or entry is not None:
                keep.append(read)  # not yet proven, or logged and about to commit
            else:
                out.append(ToClient(ref, Error(ErrorCode.ORDER_NOT_FOUND, "Order number does not exist")))
        self.reads = keep


def order_info(entry: LogEntry) -> OrderInfo:
    """The answer to an order read: a committed trade entry's order."""
    t = entry.trade
    return OrderInfo(txn=t.txn, name=t.name, quantity=t.quantity, side=t.side)
