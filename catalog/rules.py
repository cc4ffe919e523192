"""The catalog's rules, pure: the stock table, the trading rule, the journal
and the fence, behind a storage interface.

:class:`Catalog` is what the catalog node (:mod:`catalog.server`) and the
deterministic simulator (``tests/sim``) both run. It imports no socket and
no database: durable state goes through a :class:`CatalogStore`, whose
``commit`` is atomic and durable when it returns. Production uses
:class:`catalog.store.SqliteCatalogStore`; unit tests and the simulator use
:class:`MemoryCatalogStore`, which "survives a crash" by being handed to the
restarted catalog.

The rules (docs/REPLICATION.md says why each is needed):

* **Trading.** A buy needs that much stock and takes it; a sell adds. Either
  raises the stock's volume traded and its version (:func:`settle`).
* **Journal.** Every trade settled, applied or refused, is journaled under its
  request id in the same commit as the stock change. A request id seen before
  with the same trade gets its first outcome back and changes nothing (within
  one batch too); with a different trade it gets ``key_reused``, which is not
  journaled.
* **Change numbers.** Every applied trade takes the next ``seq``; the order
  leader finds trades it has not logged by ``seq`` (:meth:`Catalog.journal_after`).
* **Fence.** Requests from an epoch below the fence are refused and change
  nothing; a request from a higher epoch raises it, durably.

States: one, the table; every request either commits as a whole or changes
nothing (a failed commit leaves the in-memory mirror as it was).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from common.errors import StorageFull
from common.protocol import (
    ApplyTrades, Error, ErrorCode, Fence, Fenced, JournalEntry, Lookup, Message, StockChanged, StockInfo,
    TradeItem, TradeOutcome, TradesApplied, TradeStatus, trade_problem,
)

# The most journal entries one Fenced page carries, whatever the leader asks.
FENCE_PAGE_MAX = 1000


@dataclass(frozen=True, slots=True)
class Stock:
    name: str
    price: float
    quantity: int
    volume: int
    version: int


@dataclass(frozen=True, slots=True)
class JournalRow:
    """What the journal holds under one request id."""

    status: str
    seq: int | None
    name: str
    quantity: int
    side: str
    epoch: int


@dataclass
class Commit:
    """One atomic, durable write: what a request changes."""

    fence: int
    seq: int
    stocks: list[Stock] = field(default_factory=list)
    journal: list[tuple[str, JournalRow]] = field(default_factory=list)


class CatalogStore(Protocol):
    """What the catalog needs from durable storage."""

    def load(self) -> tuple[dict[str, Stock], int, int]:
        """The stocks, the last change number and the fence, as stored."""

    def journaled(self, request_id: str) -> JournalRow | None:
        """The journal's row for this request id, if any."""

    def journal_after(self, after_seq: int, limit: int) -> list[JournalEntry]:
        """Applied trades with ``seq > after_seq``, oldest first, at most ``limit``."""

    def commit(self, change: Commit) -> None:
        """Write ``change`` atomically; durable when it returns. On an
        exception nothing of it was written."""

    def close(self) -> None: ...


class StaleEpoch(Exception):
    """A deposed leader tried to trade; ``fence`` is the epoch now required."""

    def __init__(self, fence: int) -> None:
        super().__init__(f"epoch is older than the fence {fence}")
        self.fence = fence


@dataclass
class Applied:
    """What one batch did: the outcome per trade, and the stocks it changed
    (with their change numbers) for the bus."""

    outcomes: list[TradeOutcome]
    changes: list[tuple[Stock, int]]


@dataclass
class Answers:
    """What :meth:`Catalog.handle_all` answered: one reply per request, the
    stock changes committed (for the bus), and the refusal of a full disk if
    one stopped the writes (for the node to report)."""

    replies: list[Message]
    changes: list[StockChanged]
    full: StorageFull | None = None


def settle(stock: Stock | None, quantity: int, side: str) -> tuple[TradeStatus, Stock | None]:
    """Decide one trade.

    :param stock: the stock as it stands, or None if there is no such stock.
    :param quantity: a positive number of shares.
    :param side: ``"buy"`` or ``"sell"``.
    :returns: the status and, when it is ``ok``, the stock after the trade.
    """
    if stock is None:
        return TradeStatus.STOCK_NOT_FOUND, None
    if side == "buy":
        if quantity > stock.quantity:
            return TradeStatus.NOT_ENOUGH_STOCK, None
        new_quantity = stock.quantity - quantity
    else:
        new_quantity = stock.quantity + quantity
    return TradeStatus.OK, replace(
        stock, quantity=new_quantity, volume=stock.volume + quantity, version=stock.version + 1,
    )


def to_info(stock: Stock, seq: int) -> StockInfo:
    return StockInfo(name=stock.name, price=stock.price, quantity=stock.quantity,
                     volume=stock.volume, version=stock.version, seq=seq)


class Catalog:
    """The catalog's state and rules over ``store``. Use from one thread.

    :param store: durable storage; the table, ``seq`` and fence load from it.
    """

    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self.stocks, self.seq, self.fence = store.load()

    # --- requests -------------------------------------------------------------

    def handle(self, msg: Message) -> tuple[Message, list[StockChanged]]:
        """Answer one catalog request (never raises on bad input or a full disk).

        :returns: the reply, and the stock changes to publish on the bus
            (after the reply's commit, before the reply is sent).
        """
        answers = self.handle_all([msg])
        return answers.replies[0], answers.changes

    def handle_all(self, msgs: list[Message]) -> Answers:
        """Answer requests that arrived together, in order (never raises on
        bad input or a full disk).

        Consecutive trade batches share one commit (group commit): while one
        commit's fsync runs, the next batches wait in the socket, and then all
        of them cost one fsync instead of one each.

        A commit refused for want of space (:class:`StorageFull`) refuses the
        batches of its group with ``storage_unavailable`` (those it refused
        for their own reasons keep their replies); what committed before it
        keeps its replies and changes, and every later request is still
        tried: a lookup, a resend that writes nothing, a fence that is already
        up are answered, a write the disk refuses again is refused.

        :raises StorageFailed: (from the store) the disk failed a write; then
            no reply may be sent (the node restarts from its disk, the
            leader resends).
        """
        answers = Answers([None] * len(msgs), [])  # type: ignore[list-item]
        group = _Group(self)
        for i, msg in enumerate(msgs):
            if isinstance(msg, ApplyTrades):
                answers.replies[i] = group.add(msg)
                group.members.append((i, msg.batch))
                continue
            group = self._commit(group, answers)
            try:
                answers.replies[i] = self._answer(msg)
            except StorageFull as exc:
                answers.full = exc
                answers.replies[i] = _refusal(exc)
        self._commit(group, answers)
        return answers

    def _commit(self, group: _Group, answers: Answers) -> _Group:
        """Commit ``group`` if it holds batches; a fresh group to go on with."""
        if not group.batches:
            return group
        try:
            answers.changes += group.commit()
        except StorageFull as exc:
            answers.full = exc
            for i, batch in group.members:
                if isinstance(answers.replies[i], TradesApplied):
                    answers.replies[i] = _refusal(exc, batch=batch)
        return _Group(self)

    def _answer(self, msg: Message) -> Message:
        if isinstance(msg, Lookup):
            info = self.lookup(msg.name)
            return info if info is not None else Error(ErrorCode.STOCK_NOT_FOUND, "stock not found")
        if isinstance(msg, Fence):
            try:
                self.raise_fence(msg.epoch, msg.after_seq)
            except StaleEpoch as exc:
                return Error(ErrorCode.STALE_EPOCH, f"epoch {msg.epoch} is fenced off", epoch=exc.fence)
            entries, more = self.journal_after(msg.after_seq, max(1, min(msg.limit, FENCE_PAGE_MAX)))
            return Fenced(epoch=msg.epoch, entries=entries, more=more)
        return Error(ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not a catalog request")

    # --- reads ----------------------------------------------------------------

    def lookup(self, name: str) -> StockInfo | None:
        stock = self.stocks.get(name)
        return None if stock is None else to_info(stock, self.seq)

    def journal_after(self, after_seq: int, limit: int) -> tuple[list[JournalEntry], bool]:
        """Applied trades with ``seq > after_seq``, oldest first.

        :returns: at most ``limit`` entries, and whether more follow.
        """
        rows = self.store.journal_after(after_seq, limit + 1)
        return rows[:limit], len(rows) > limit

    # --- writes ---------------------------------------------------------------

    def raise_fence(self, epoch: int, log_seq: int = 0) -> None:
        """Refuse requests from epochs below ``epoch`` from now on (durably).

        :param log_seq: the highest change number the leader's log holds. The
            catalog's own is never below it, but after the catalog lost its data
            (``./run.sh reset 'catalog!'``): then its numbering goes on from
            there, so that new trades never take numbers the log already has.
        :raises StaleEpoch: if a higher fence is already up.
        """
        if epoch < self.fence:
            raise StaleEpoch(self.fence)
        if epoch > self.fence or log_seq > self.seq:
            seq = max(self.seq, log_seq)
            self.store.commit(Commit(fence=epoch, seq=seq))
            self.fence, self.seq = epoch, seq

    def apply(self, epoch: int, trades: list[TradeItem]) -> Applied:
        """Settle a batch of trades in one commit, in order.

        :raises StaleEpoch: if ``epoch`` is below the fence (nothing changes).
        """
        group = _Group(self)
        applied = group.settle(epoch, trades)
        group.commit()
        return applied


class _Group:
    """Trade batches settled one after another on top of each other, then
    committed together; nothing of them is visible (lookups, the fence, the
    table) until the commit succeeded."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.change = Commit(fence=catalog.fence, seq=catalog.seq)
        self.stocks: dict[str, Stock] = {}       # the group's changes so far, by name
        self.fresh: dict[str, JournalRow] = {}   # the group's journal rows so far
        self.batches = 0
        self.members: list[tuple[int, int]] = []  # (place in handle_all's list, batch number)
        self.changes: list[tuple[Stock, int]] = []

    def add(self, msg: ApplyTrades) -> Message:
        """Settle one request's batch into the group; its reply (valid once committed)."""
        for item in msg.trades:
            problem = trade_problem(item.request_id, item.name, item.quantity, item.side)
            if problem:
                return Error(ErrorCode.BAD_REQUEST, f"trade {item.request_id!r}: {problem}", batch=msg.batch)
        try:
            applied = self.settle(msg.epoch, msg.trades)
        except StaleEpoch as exc:
            return Error(ErrorCode.STALE_EPOCH, f"epoch {msg.epoch} is fenced off", epoch=exc.fence,
                         batch=msg.batch)
        return TradesApplied(batch=msg.batch, outcomes=applied.outcomes)

    def settle(self, epoch: int, trades: list[TradeItem]) -> Applied:
        """:raises StaleEpoch: if ``epoch`` is below the fence (nothing changes)."""
        change = self.change
        if epoch < change.fence:
            raise StaleEpoch(change.fence)
        change.fence = max(change.fence, epoch)
        self.batches += 1
        outcomes: list[TradeOutcome] = []
        changes: list[tuple[Stock, int]] = []
        for item in trades:
            row = self.fresh.get(item.request_id) or self.catalog.store.journaled(item.request_id)
            if row is not None:
                outcomes.append(_replay(item, row))
                continue
            current = self.stocks.get(item.name) or self.catalog.stocks.get(item.name)
            status, after = settle(current, item.quantity, item.side)
            entry_seq = None
            if after is not None:
                change.seq += 1
                entry_seq = change.seq
                self.stocks[item.name] = after
                changes.append((after, entry_seq))
            row = JournalRow(status.value, entry_seq, item.name, item.quantity, item.side, epoch)
            self.fresh[item.request_id] = row
            change.journal.append((item.request_id, row))
            outcomes.append(TradeOutcome(request_id=item.request_id, status=status.value, seq=entry_seq,
                                         stock=None if after is None else to_info(after, entry_seq)))
        self.changes += changes
        return Applied(outcomes, changes)

    def commit(self) -> list[StockChanged]:
        """One durable write for the whole group, then the table moves on.

        :returns: the stock changes, for the bus.
        """
        catalog = self.catalog
        change = self.change
        if change.journal or change.fence != catalog.fence or change.seq != catalog.seq:
            change.stocks = list(self.stocks.values())
            catalog.store.commit(change)
        # else: every trade was a replay of a journaled one (a resend): nothing to write,
        # so a resend is answered even while the disk is full.
        catalog.stocks.update(self.stocks)
        catalog.seq = self.change.seq
        catalog.fence = self.change.fence
        return [StockChanged(name=s.name, price=s.price, quantity=s.quantity, version=s.version, seq=seq)
                for s, seq in self.changes]


def _refusal(exc: StorageFull, batch: int | None = None) -> Error:
    """``storage_unavailable`` for a request that needed a write (a batch's
    number with it); nothing of it was carried out."""
    return Error(ErrorCode.STORAGE, f"catalog: {exc}", batch=batch)


def _replay(item: TradeItem, row: JournalRow) -> TradeOutcome:
    if (row.name, row.quantity, row.side) != (item.name, item.quantity, item.side):
        return TradeOutcome(request_id=item.request_id, status=TradeStatus.KEY_REUSED.value)
    return TradeOutcome(request_id=item.request_id, status=row.status, seq=row.seq)


class MemoryCatalogStore:
    """A :class:`CatalogStore` held in memory (tests and simulation).

    :param stocks: the initial table.
    """

    def __init__(self, stocks: dict[str, Stock]) -> None:
        self.stocks = dict(stocks)
        self.seq = 0
        self.fence = 0
        self.journal: dict[str, JournalRow] = {}
        self.applied: list[JournalEntry] = []  # in seq order

    def load(self) -> tuple[dict[str, Stock], int, int]:
        return dict(self.stocks), self.seq, self.fence

    def journaled(self, request_id: str) -> JournalRow | None:
        return self.journal.get(request_id)

    def journal_after(self, after_seq: int, limit: int) -> list[JournalEntry]:
        return [j for j in self.applied if j.seq > after_seq][:limit]

    def commit(self, change: Commit) -> None:
        for stock in change.stocks:
            self.stocks[stock.name] = stock
        for request_id, row in change.journal:
            self.journal[request_id] = row
            if row.seq is not None:
                self.applied.append(JournalEntry(row.seq, request_id, row.name, row.quantity, row.side))
        self.seq, self.fence = change.seq, change.fence

    def close(self) -> None:
        pass
