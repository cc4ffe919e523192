"""The stock book (common/book.py): the one definition of what a log entry
does to the stocks, and the invariants that make a wrong log stop a node
rather than be guessed around."""

from __future__ import annotations

import pytest

from common.book import Book, BrokenFold, Stock, fold, settle
from common.protocol import LogEntry, StockRow, TradeRecord, TradeStatus

GENESIS = LogEntry(1, 1, genesis=[StockRow("A", 1.5, 10, 2), StockRow("B", 3.0, 0, 0)])


def ok(index: int, txn: int, name: str = "A", quantity: int = 1, side: str = "buy") -> LogEntry:
    return LogEntry(index, 1, TradeRecord(f"r{index}", name, quantity, side, txn))


def refused(index: int, name: str = "A", quantity: int = 99) -> LogEntry:
    return LogEntry(index, 1, TradeRecord(f"r{index}", name, quantity, "buy", None, TradeStatus.NOT_ENOUGH_STOCK))


def test_the_genesis_creates_every_stock_at_version_one():
    book = Book()
    changed = book.apply(GENESIS)
    assert {s.name for s in changed} == {"A", "B"}
    assert book.get("A") == Stock("A", 1.5, 10, 2, 1) and book.started and book.applied == 1


def test_trades_change_quantity_volume_and_version_refusals_and_no_ops_only_the_index():
    book = fold([GENESIS, ok(2, 1, quantity=4), LogEntry(3, 2), refused(4), ok(5, 2, "B", 7, "sell")])
    assert book.get("A") == Stock("A", 1.5, 6, 6, 2)
    assert book.get("B") == Stock("B", 3.0, 7, 7, 5)
    assert (book.applied, book.last_txn) == (5, 2)


def test_settle_decides_as_the_fold_checks():
    stock = Stock("A", 1.0, 5, 0, 1)
    assert settle(stock, 5, "buy") is TradeStatus.OK
    assert settle(stock, 6, "buy") is TradeStatus.NOT_ENOUGH_STOCK
    assert settle(stock, 600, "sell") is TradeStatus.OK
    assert settle(None, 1, "buy") is TradeStatus.STOCK_NOT_FOUND


@pytest.mark.parametrize("entries,words", [
    ([ok(1, 1)], "does not begin with the initial stocks"),
    ([GENESIS, GENESIS], "entry 1 applied after 1"),
    ([GENESIS, LogEntry(2, 1, genesis=GENESIS.genesis)], "only entry 1 may"),
    ([GENESIS, ok(3, 1)], "entry 3 applied after 1"),
    ([GENESIS, ok(2, 2)], "transaction number 2, after 0"),
    ([GENESIS, ok(2, 1, "Z")], "does not list"),
    ([GENESIS, ok(2, 1, quantity=11)], "holds 10: not_enough_stock"),
    ([GENESIS, refused(2, quantity=3)], "says not_enough_stock"),
    ([GENESIS, LogEntry(2, 1, TradeRecord("x", "A", 99, "buy", 1, TradeStatus.NOT_ENOUGH_STOCK))],
     "refusal with a transaction number"),
    ([LogEntry(1, 1, genesis=[StockRow("A", 1.0, 1, 0), StockRow("A", 1.0, 1, 0)])], "twice"),
])
def test_a_log_that_breaks_an_invariant_is_refused(entries, words):
    with pytest.raises(BrokenFold, match=words):
        fold(entries)


def test_a_draft_sees_its_own_entries_and_leaves_the_book_alone_until_merged():
    book = fold([GENESIS, ok(2, 1)])
    draft = book.child()
    draft.apply(ok(3, 2, quantity=5))
    assert draft.get("A").quantity == 4 and book.get("A").quantity == 9
    assert draft.get("B") is book.get("B")  # untouched stocks come from the book
    assert draft.all()["A"].quantity == 4 and (draft.applied, book.applied) == (3, 2)
    book.merge(draft)
    assert book.get("A").quantity == 4 and (book.applied, book.last_txn) == (3, 2)
    with pytest.raises(ValueError):
        book.merge(Book())


def test_apply_all_skips_what_is_folded_and_reports_each_change_once():
    book = fold([GENESIS])
    changed = book.apply_all([GENESIS, ok(2, 1), ok(3, 2), ok(4, 3, "B", 1, "sell")])
    assert sorted((s.name, s.quantity) for s in changed) == [("A", 8), ("B", 1)]


def test_take_dirty_lists_the_stocks_changed_since_the_last_call():
    book = fold([GENESIS])
    assert [s.name for s in book.take_dirty()] == ["A", "B"]
    book.apply(ok(2, 1))
    assert [s.name for s in book.take_dirty()] == ["A"] and book.take_dirty() == []
