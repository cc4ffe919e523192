"""The stock book: every stock's figures as a fold of the order log, pure.

The replicated order log is the only source of truth (docs/ARCHITECTURE.md,
promise 3). Its first entry, the *genesis*, holds the initial stocks (the CSV
is read once, when the cluster is created); every later entry is a no-op, a
trade the leader accepted (with its transaction number), or a trade it
refused for want of stock. :meth:`Book.apply` is the one definition of what
an entry does to the stocks, and everyone folds the log with it:

* every order replica, over its committed entries: its replicated state,
  from which it answers lookups and the leader decides the next trade;
* the catalog, over the committed entries it fetches: its projection;
* the history checker, over a final log, to judge both.

The fold's invariants (a broken one raises :class:`BrokenFold`: the node
stops loudly rather than guess):

* entries are applied strictly in index order, each once; the first is the
  genesis and only the first;
* an accepted trade takes the next transaction number (numbers start at 1,
  with no gaps), names a stock of the genesis, and a buy takes no more than
  the stock holds;
* a refusal is justified: a buy of more than the stock holds then. It
  changes nothing but the index;
* a stock's ``version`` is the index of the entry that last changed it (the
  genesis's index, 1, for a stock never traded), so versions of different
  stocks compare, and a trade's reply names the version a reader must see.

:meth:`Book.child` gives a draft on top of a book: entries applied to it
are seen through it and leave the book as it was, until :meth:`Book.merge`.
The leader decides on a draft (its committed book plus its own uncommitted
entries); the catalog applies a fetched page to one, commits it to its
disk, and only then merges it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BrokenFold
from .protocol import LogEntry, StockInfo, StockRow, TradeRecord, TradeStatus

__all__ = ["Book", "BrokenFold", "Stock", "fold", "settle"]


@dataclass(frozen=True, slots=True)
class Stock:
    """One stock as the fold holds it."""

    name: str
    price: float
    quantity: int
    volume: int
    version: int

    def info(self, index: int) -> StockInfo:
        """The stock on the wire, as of log index ``index``."""
        return StockInfo(name=self.name, price=self.price, quantity=self.quantity, volume=self.volume,
                         version=self.version, index=index)


def settle(stock: Stock | None, quantity: int, side: str) -> TradeStatus:
    """Decide one trade against the stock as it stands (None: no such stock)."""
    if stock is None:
        return TradeStatus.STOCK_NOT_FOUND
    if side == "buy" and quantity > stock.quantity:
        return TradeStatus.NOT_ENOUGH_STOCK
    return TradeStatus.OK


class Book:
    """The fold of a log up to :attr:`applied`.

    :param stocks: the stocks (all of them; a draft's: those it changed).
    :param applied: the index of the last entry folded in (0: nothing yet).
    :param last_txn: the last transaction number folded in (0: none yet).
    :param base: the book a draft stands on (None for a book of its own).
    """

    def __init__(self, stocks: dict[str, Stock] | None = None, applied: int = 0, last_txn: int = 0,
                 base: Book | None = None) -> None:
        self.stocks: dict[str, Stock] = dict(stocks or {})
        self.applied = applied
        self.last_txn = last_txn
        self.base = base
        self.dirty: set[str] = set()  # changed since the last take_dirty (what to write to disk)

    # --- reads ----------------------------------------------------------------

    def get(self, name: str) -> Stock | None:
        stock = self.stocks.get(name)
        if stock is None and self.base is not None:
            return self.base.get(name)
        return stock

    @property
    def started(self) -> bool:
        """Whether the genesis is folded in (before it, no stock exists)."""
        return self.applied > 0

    def all(self) -> dict[str, Stock]:
        """Every stock (a draft's changes over its base's)."""
        if self.base is None:
            return dict(self.stocks)
        return {**self.base.all(), **self.stocks}

    # --- the fold ---------------------------------------------------------------

    def apply(self, entry: LogEntry) -> list[Stock]:
        """Fold in the next entry.

        :returns: the stocks it changed (every one for the genesis, one for an
            accepted trade, none for a refusal or a no-op).
        :raises BrokenFold: the entry is not the next one, or breaks an invariant.
        """
        if entry.index != self.applied + 1:
            raise BrokenFold(f"entry {entry.index} applied after {self.applied}")
        changed: list[Stock] = []
        if entry.genesis is not None:
            if entry.index != 1 or entry.trade is not None:
                raise BrokenFold(f"entry {entry.index} holds initial stocks; only entry 1 may")
            changed = self._genesis(entry.genesis)
        elif entry.index == 1:
            raise BrokenFold("the log does not begin with the initial stocks (entry 1 is no genesis)")
        elif entry.trade is not None:
            changed = self._trade(entry.index, entry.trade)
        self.applied = entry.index
        return changed

    def apply_all(self, entries: list[LogEntry]) -> list[Stock]:
        """Fold in entries in order, skipping those already folded in.

        :returns: the stocks changed, each once, as they end.
        """
        changed: dict[str, Stock] = {}
        for entry in entries:
            if entry.index <= self.applied:
                continue
            for stock in self.apply(entry):
                changed[stock.name] = stock
        return list(changed.values())

    def _genesis(self, rows: list[StockRow]) -> list[Stock]:
        if not rows:
            raise BrokenFold("the genesis lists no stocks")
        for row in rows:
            if row.name in self.stocks:
                raise BrokenFold(f"the genesis lists {row.name} twice")
            self._put(Stock(row.name, row.price, row.quantity, row.volume, 1))
        return list(self.stocks.values())

    def _trade(self, index: int, trade: TradeRecord) -> list[Stock]:
        stock = self.get(trade.name)
        if stock is None:
            raise BrokenFold(f"entry {index} trades {trade.name!r}, which the genesis does not list")
        status = settle(stock, trade.quantity, trade.side)
        if trade.status != status:
            raise BrokenFold(f"entry {index} says {trade.status.value} for {trade.side} {trade.quantity} "
                             f"{trade.name}, but the book holds {stock.quantity}: {status.value}")
        if status is not TradeStatus.OK:
            if trade.txn is not None:
                raise BrokenFold(f"entry {index} is a refusal with a transaction number")
            return []
        if trade.txn != self.last_txn + 1:
            raise BrokenFold(f"entry {index} has transaction number {trade.txn}, after {self.last_txn}")
        self.last_txn = trade.txn
        delta = -trade.quantity if trade.side == "buy" else trade.quantity
        after = Stock(stock.name, stock.price, stock.quantity + delta, stock.volume + trade.quantity, index)
        self._put(after)
        return [after]

    def _put(self, stock: Stock) -> None:
        self.stocks[stock.name] = stock
        self.dirty.add(stock.name)

    # --- drafts -------------------------------------------------------------------

    def child(self) -> Book:
        """A draft on top of this book: what is applied to it is seen through
        it only, until :meth:`merge`."""
        return Book(applied=self.applied, last_txn=self.last_txn, base=self)

    def merge(self, draft: Book) -> None:
        """Take a draft's entries as this book's own (it was made by :meth:`child`)."""
        if draft.base is not self:
            raise ValueError("a draft merges only into the book it was made from")
        for stock in draft.stocks.values():
            self._put(stock)
        self.applied, self.last_txn = draft.applied, draft.last_txn

    def take_dirty(self) -> list[Stock]:
        """The stocks changed since the last call (to write them to disk)."""
        changed = [self.stocks[name] for name in sorted(self.dirty)]
        self.dirty.clear()
        return changed


def fold(entries: list[LogEntry]) -> Book:
    """The book a whole log folds to (the checker's and the tests' view).

    :raises BrokenFold: if the log breaks an invariant.
    """
    book = Book()
    for entry in entries:
        book.apply(entry)
    return book
