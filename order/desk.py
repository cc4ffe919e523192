"""The leader's trading desk: from a placed trade to an acknowledged order, pure.

A trade touches two nodes, the catalog (the stock) and the order log (the
transaction number). The desk keeps them in agreement this way (the full
argument is in docs/REPLICATION.md):

1. **Fence, then adopt.** A new leader first raises the catalog's fence to its
   epoch, which makes the catalog refuse every older leader from then on, and
   fetches the catalog's journal of applied trades beyond the highest catalog
   change number (``seq``) in its own log. Those are trades a dead leader got
   applied but never logged; the desk appends them to the log (new
   transaction numbers, same request ids) before it takes any new trade.
2. **Catalog first, then log, in the catalog's order.** New trades go to the
   catalog in batches (one durable transaction each, up to
   :data:`BATCHES_IN_FLIGHT` at a time); applied ones are appended to the log
   in the order of their catalog change number ``seq``, with no seq left out
   (a trade whose batch came back before an earlier batch's waits, held, for
   the seqs before it), and acknowledged once a majority of replicas holds
   them. So the log holds every seq up to its highest, which is what the next
   leader's adoption relies on. Refused ones (not enough stock, unknown stock)
   are answered at once and never logged.
3. **Request ids everywhere.** A retry finds its trade by request id in the
   log, in the pipeline, or in the catalog's journal, and gets the first
   result back; nothing is applied twice.

States::

    idle --leader of term T--> fencing --journal adopted--> ready
    fencing / ready --stepped down--> idle (every waiter told "not leader")

Like :mod:`order.raft`, this imports no socket and reads no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.protocol import (
    ApplyTrades, Error, ErrorCode, Fence, Fenced, GetOrder, LogEntry, Message, OrderInfo, PlaceTrade,
    StockInfo, TradeDone, TradeItem, TradeRecord, TradesApplied, TradeStatus,
)

from .log import LogStore
from .raft import Raft

BATCH_MAX = 128
# Batches at the catalog at once. More than one lets the next batch leave
# while the previous one commits; measured on the 2-core development machine,
# where the whole cluster is CPU-bound, 4 in flight gave smaller batches, more
# messages per trade and fewer trades per second than 1 (docs/PERFORMANCE.md),
# so one batch waits for the other and trades that arrive meanwhile share the
# next one. The ordering rules hold for any number.
BATCHES_IN_FLIGHT = 1
QUEUE_MAX = 10_000
READS_MAX = 10_000
FENCE_PAGE = 500

REFUSALS = {
    TradeStatus.NOT_ENOUGH_STOCK: (ErrorCode.NOT_ENOUGH_STOCK, "Not enough stock"),
    TradeStatus.STOCK_NOT_FOUND: (ErrorCode.STOCK_NOT_FOUND, "stock not found"),
    TradeStatus.KEY_REUSED: (ErrorCode.KEY_REUSED, "this request id was already used for a different trade"),
}


@dataclass(frozen=True)
class ToClient:
    """Reply to the frontend request identified by ``ref`` (a ROUTER envelope)."""

    ref: Any
    msg: Message


@dataclass(frozen=True)
class ToCatalog:
    msg: Message


@dataclass(frozen=True)
class StepDownRequest:
    """The catalog showed a newer epoch exists: stop leading."""

    term: int


@dataclass
class Pending:
    """A trade on its way: queued, at the catalog, or logged but uncommitted."""

    item: TradeItem
    waiters: list[Any] = field(default_factory=list)
    stock: StockInfo | None = None
    entry: LogEntry | None = None


@dataclass
class Batch:
    msg: ApplyTrades
    trades: list[Pending]
    sent_at: float


def _same(item: TradeItem, name: str, quantity: int, side: str) -> bool:
    return (item.name, item.quantity, item.side) == (name, quantity, side)


def _done(trade: TradeRecord, stock: StockInfo | None = None) -> TradeDone:
    return TradeDone(txn=trade.txn, name=trade.name, quantity=trade.quantity, side=trade.side, stock=stock)


class Desk:
    """The trade pipeline of a replica while it leads.

    :param raft: the replica's consensus state (the desk proposes through it).
    :param catalog_s: how long to wait for the catalog before resending.
    """

    def __init__(self, raft: Raft, log: LogStore, catalog_s: float) -> None:
        self.raft = raft
        self.log = log
        self.catalog_s = catalog_s
        self.epoch: int | None = None
        self.ready = False
        self.noop_index = 0
        self.fence: tuple[Fence, float] | None = None
        self.queue: deque[Pending] = deque()
        self.pending: dict[str, Pending] = {}
        self.awaiting: dict[int, Pending] = {}
        self.batches: dict[int, Batch] = {}  # in flight at the catalog, oldest first
        self.batch_counter = 0
        self.held: dict[int, tuple[Pending, int]] = {}  # applied, waiting for an earlier seq: seq -> (trade, seq)
        self.next_seq = 1  # the catalog change number the log takes next
        self.next_txn = 0
        self.reads: list[tuple[int, Any, int]] = []
        self.confirmed_probe = 0

    # --- leadership -----------------------------------------------------------

    def start(self, term: int, now: float) -> list:
        """This replica now leads ``term``: commit the past, fence the catalog."""
        self.epoch = term
        self.ready = False
        self.next_txn = self.log.last_txn() + 1
        self.next_seq = self.log.max_seq() + 1
        entries, out = self.raft.propose([None], now)
        self.noop_index = entries[0].index if entries else 0
        self._send_fence(self.log.max_seq(), now, out)
        return out

    def stop(self, refusal: Error) -> list:
        """This replica stopped leading: every waiter is told so (and retries
        on the new leader, where its request id finds the trade)."""
        out = []
        seen: set[int] = set()
        at_catalog = [t for batch in self.batches.values() for t in batch.trades]
        for trade in [*self.queue, *at_catalog, *(t for t, _ in self.held.values()), *self.awaiting.values()]:
            if id(trade) not in seen:
                seen.add(id(trade))
                out.extend(ToClient(ref, refusal) for ref in trade.waiters)
        out.extend(ToClient(ref, refusal) for _, ref, _ in self.reads)
        self.epoch = None
        self.ready = False
        self.fence = None
        self.queue.clear()
        self.pending.clear()
        self.awaiting.clear()
        self.batches.clear()
        self.held.clear()
        self.reads.clear()
        self.confirmed_probe = 0
        return out

    # --- requests from frontends ----------------------------------------------

    def place(self, ref: Any, msg: PlaceTrade, now: float) -> list:
        out: list = []
        entry = self.log.by_request(msg.request_id)
        if entry is not None:
            trade = entry.trade
            if not _same(TradeItem(trade.request_id, trade.name, trade.quantity, trade.side),
                         msg.name, msg.quantity, msg.side):
                return [ToClient(ref, Error(*REFUSALS[TradeStatus.KEY_REUSED]))]
            if entry.index <= self.raft.commit:
                return [ToClient(ref, _done(trade))]
            waiting = self.awaiting.get(entry.index)
            if waiting is None:  # logged by an earlier leader, commits with our no-op
                waiting = Pending(TradeItem(trade.request_id, trade.name, trade.quantity, trade.side), entry=entry)
                self.awaiting[entry.index] = waiting
            waiting.waiters.append(ref)
            return out
        known = self.pending.get(msg.request_id)
        if known is not None:
            if not _same(known.item, msg.name, msg.quantity, msg.side):
                return [ToClient(ref, Error(*REFUSALS[TradeStatus.KEY_REUSED]))]
            known.waiters.append(ref)
            return out
        if len(self.pending) >= QUEUE_MAX:
            return [ToClient(ref, Error(ErrorCode.UNAVAILABLE, "the order leader is overloaded, retry later"))]
        trade = Pending(TradeItem(msg.request_id, msg.name, msg.quantity, msg.side), waiters=[ref])
        self.pending[msg.request_id] = trade
        self.queue.append(trade)
        self._pump(now, out)
        return out

    def get_order(self, ref: Any, msg: GetOrder, now: float) -> list:
        entry = self.log.by_txn(msg.txn)
        if entry is not None and entry.index <= self.raft.commit:
            return [ToClient(ref, self._order(entry))]
        if len(self.reads) >= READS_MAX:
            return [ToClient(ref, Error(ErrorCode.UNAVAILABLE, "too many reads in flight, retry later"))]
        # "No such order" needs proof that we still lead and our log is current.
        probe, out = self.raft.read_barrier(now)
        self.reads.append((probe, ref, msg.txn))
        return out

    # --- raft signals -----------------------------------------------------------

    def on_commit(self, index: int) -> list:
        out = []
        for idx in sorted(i for i in self.awaiting if i <= index):
            trade = self.awaiting.pop(idx)
            self.pending.pop(trade.item.request_id, None)
            out.extend(ToClient(ref, _done(trade.entry.trade, trade.stock)) for ref in trade.waiters)
        self._answer_reads(out)
        return out

    def on_read_confirmed(self, probe: int) -> list:
        out: list = []
        if probe > self.confirmed_probe:
            self.confirmed_probe = probe
            self._answer_reads(out)
        return out

    def _answer_reads(self, out: list) -> None:
        if not self.reads or self.raft.commit < self.noop_index:
            return
        keep = []
        for read in self.reads:
            read_probe, ref, txn = read
            entry = self.log.by_txn(txn)
            if entry is not None and entry.index <= self.raft.commit:
                out.append(ToClient(ref, self._order(entry)))
            elif read_probe > self.confirmed_probe or entry is not None:
                keep.append(read)  # not yet proven, or logged and about to commit
            else:
                out.append(ToClient(ref, Error(ErrorCode.ORDER_NOT_FOUND, "Order number does not exist")))
        self.reads = keep

    # --- catalog replies ----------------------------------------------------

    def on_catalog(self, msg: Message, now: float) -> list:
        out: list = []
        if self.epoch is None:
            return out
        if isinstance(msg, Fenced):
            if self.fence is not None and msg.epoch == self.epoch:
                self._adopt(msg, now, out)
        elif isinstance(msg, TradesApplied):
            batch = self.batches.pop(msg.batch, None)
            if batch is not None:
                self._settle(batch, msg, now, out)
        elif isinstance(msg, Error):
            if msg.code == ErrorCode.STALE_EPOCH and msg.epoch is not None and msg.epoch > self.epoch:
                out.append(StepDownRequest(msg.epoch))
            elif self.batches and msg.code in (ErrorCode.BAD_REQUEST, ErrorCode.STORAGE):
                # The refusal names its batch (one that names none is the oldest's: the catalog
                # answers in order); one for a batch no longer in flight answered a resend of a
                # batch settled since, and is dropped. Nothing of the refused batch was applied:
                # its trades fail now, and a retry with the same request id starts afresh.
                # (bad_request: only a bug could get here, so fail it rather than retry forever;
                # storage_unavailable: the catalog's disk is full, and the client says so.)
                number = next(iter(self.batches)) if msg.batch is None else msg.batch
                if number not in self.batches:
                    return out
                refusal = (Error(ErrorCode.STORAGE, msg.message) if msg.code == ErrorCode.STORAGE else
                           Error(ErrorCode.BAD_REQUEST, f"the catalog refused the batch: {msg.message}"))
                self._fail(self.batches.pop(number).trades, refusal, out)
                self._pump(now, out)
            elif msg.code == ErrorCode.STORAGE and self.fence is not None and not self.batches:
                # Our fence needs a write and the catalog's disk is full: no trade can go until it is
                # raised, so the queued ones fail now, saying why (nothing of them was carried out); the
                # fence is resent on the timer, and trades flow again once it is through.
                self._fail(self.queue, Error(ErrorCode.STORAGE, msg.message), out)
                self.queue.clear()
        return out

    def _fail(self, trades: Iterable[Pending], refusal: Error, out: list) -> None:
        """Tell every waiter of ``trades`` that they failed (nothing of them was carried out)."""
        for trade in trades:
            self.pending.pop(trade.item.request_id, None)
            out.extend(ToClient(ref, refusal) for ref in trade.waiters)

    def tick(self, now: float) -> list:
        out: list = []
        if self.fence is not None and now - self.fence[1] >= self.catalog_s:
            self.fence = (self.fence[0], now)
            out.append(ToCatalog(self.fence[0]))
        if self.batches and now - next(iter(self.batches.values())).sent_at >= self.catalog_s:
            # The oldest has waited too long: resend every batch in flight, in order (the
            # catalog's journal makes a batch it already applied a replay).
            for batch in self.batches.values():
                batch.sent_at = now
                out.append(ToCatalog(batch.msg))
        return out

    def next_deadline(self) -> float | None:
        times = [self.fence[1]] if self.fence is not None else []
        if self.batches:
            times.append(next(iter(self.batches.values())).sent_at)
        return min(times) + self.catalog_s if times else None

    def at_catalog(self) -> int:
        """How many trades are at the catalog now."""
        return sum(len(batch.trades) for batch in self.batches.values())

    # --- internals ------------------------------------------------------------

    def _order(self, entry: LogEntry) -> OrderInfo:
        t = entry.trade
        return OrderInfo(txn=t.txn, name=t.name, quantity=t.quantity, side=t.side)

    def _send_fence(self, after_seq: int, now: float, out: list) -> None:
        fence = Fence(epoch=self.epoch, after_seq=after_seq, limit=FENCE_PAGE)
        self.fence = (fence, now)
        out.append(ToCatalog(fence))

    def _adopt(self, msg: Fenced, now: float, out: list) -> None:
        """Log the trades the catalog applied that no log holds yet."""
        records = []
        for j in msg.entries:
            self.next_seq = max(self.next_seq, j.seq + 1)
            if self.log.by_request(j.request_id) is None:
                records.append(TradeRecord(txn=self.next_txn, request_id=j.request_id, name=j.name,
                                           quantity=j.quantity, side=j.side, seq=j.seq))
                self.next_txn += 1
        if records:
            entries, raft_out = self.raft.propose(records, now)
            out.extend(raft_out)
            for entry in entries:
                t = entry.trade
                trade = self.pending.get(t.request_id)
                if trade is not None and trade in self.queue:  # its retry came in while we fenced
                    self.queue.remove(trade)
                    if not _same(trade.item, t.name, t.quantity, t.side):
                        self.pending.pop(t.request_id)
                        out.extend(ToClient(ref, Error(*REFUSALS[TradeStatus.KEY_REUSED])) for ref in trade.waiters)
                        trade = None
                if trade is None:
                    trade = Pending(TradeItem(t.request_id, t.name, t.quantity, t.side))
                trade.entry = entry
                self.awaiting[entry.index] = trade
        if msg.more and msg.entries:
            self._send_fence(msg.entries[-1].seq, now, out)
            return
        self.fence = None
        self.ready = True
        self._pump(now, out)

    def _pump(self, now: float, out: list) -> None:
        while self.ready and self.queue and len(self.batches) < BATCHES_IN_FLIGHT:
            trades = [self.queue.popleft() for _ in range(min(BATCH_MAX, len(self.queue)))]
            self.batch_counter += 1
            msg = ApplyTrades(epoch=self.epoch, batch=self.batch_counter, trades=[t.item for t in trades])
            self.batches[self.batch_counter] = Batch(msg, trades, now)
            out.append(ToCatalog(msg))

    def _settle(self, batch: Batch, msg: TradesApplied, now: float, out: list) -> None:
        trades = {t.item.request_id: t for t in batch.trades}
        for outcome in msg.outcomes:
            trade = trades.pop(outcome.request_id, None)
            if trade is None:
                continue
            if outcome.status != TradeStatus.OK or outcome.seq is None:
                self.pending.pop(outcome.request_id, None)
                refusal = Error(*REFUSALS.get(outcome.status, (ErrorCode.UNAVAILABLE, "trade failed, retry")))
                out.extend(ToClient(ref, refusal) for ref in trade.waiters)
                continue
            trade.stock = outcome.stock
            logged = self.log.by_request(outcome.request_id)
            if logged is not None:  # a replay of a trade our log already holds
                trade.entry = logged
                if logged.index <= self.raft.commit:
                    self.pending.pop(outcome.request_id, None)
                    out.extend(ToClient(ref, _done(logged.trade, trade.stock)) for ref in trade.waiters)
                else:
                    waiting = self.awaiting.setdefault(logged.index, trade)
                    if waiting is not trade:  # someone waits on that entry already: wait together
                        waiting.waiters.extend(trade.waiters)
                        waiting.stock = waiting.stock or trade.stock
                        self.pending[outcome.request_id] = waiting
                continue
            if outcome.seq >= self.next_seq:
                self.held[outcome.seq] = (trade, outcome.seq)
            else:  # a seq the log is past, for a trade it lacks: the catalog's numbering went back
                self.pending.pop(outcome.request_id, None)
                refusal = Error(ErrorCode.UNAVAILABLE, f"the catalog numbered the trade {outcome.seq}, behind the "
                                                       f"log's {self.next_seq - 1}; retry")
                out.extend(ToClient(ref, refusal) for ref in trade.waiters)
        for trade in trades.values():  # the catalog skipped it: should not happen, so retry it
            self.queue.appendleft(trade)
        self._log_held(now, out)
        self._pump(now, out)

    def _log_held(self, now: float, out: list) -> None:
        """Log the applied trades whose seqs follow the log's, in seq order."""
        records: list[TradeRecord] = []
        owners: list[Pending] = []
        while self.next_seq in self.held:
            trade, seq = self.held.pop(self.next_seq)
            records.append(TradeRecord(
                txn=self.next_txn, request_id=trade.item.request_id, name=trade.item.name,
                quantity=trade.item.quantity, side=trade.item.side, seq=seq,
            ))
            self.next_txn += 1
            self.next_seq += 1
            owners.append(trade)
        if records:
            entries, raft_out = self.raft.propose(records, now)
            for entry, trade in zip(entries, owners):
                trade.entry = entry
                self.awaiting[entry.index] = trade
            out.extend(raft_out)
