"""The order log in SQLite (order/store.py) against the in-memory reference
(order/log.py): the same operations give the same answers, the UNIQUE
constraints hold, and what was written survives a reopen."""

from __future__ import annotations

import random
import sqlite3

import msgpack
import pytest

from common import codec
from common.errors import RemoteProtocolError
from common.book import Book, Stock
from common.protocol import PROTOCOL_VERSION, LogEntry, StockRow, TradeRecord, TradeStatus
from order.log import MemoryLog
from order.store import SqliteLog


def trade(txn: int, rid: str | None = None, name: str = "GameStart", quantity: int = 1,
          side: str = "buy") -> TradeRecord:
    return TradeRecord(request_id=rid or f"req-{txn}", name=name, quantity=quantity, side=side, txn=txn)


def refusal(rid: str, quantity: int = 500) -> TradeRecord:
    return TradeRecord(request_id=rid, name="GameStart", quantity=quantity, side="buy", txn=None,
                       status=TradeStatus.NOT_ENOUGH_STOCK)


def entry(index: int, term: int, t: TradeRecord | None = None) -> LogEntry:
    return LogEntry(index=index, term=term, trade=t)


GENESIS = LogEntry(index=1, term=1, genesis=[StockRow("GameStart", 15.99, 100, 0), StockRow("FishCo", 2.5, 7, 3)])


def view(log) -> dict:
    """Every answer a LogStore gives, for comparing two of them."""
    last = log.last_index()
    entries = log.entries(1, last)
    terms = sorted({e.term for e in entries})
    rids = [e.trade.request_id for e in entries if e.trade] + ["req-unknown"]
    txns = [e.trade.txn for e in entries if e.trade] + [-1, 10**6]
    return {
        "hard_state": log.hard_state(),
        "last_index": last,
        "last_term": log.last_term(),
        "term_at": [log.term_at(i) for i in range(-1, last + 3)],
        "entries": entries,
        "entries_clamped": (log.entries(0, last + 5), log.entries(2, 1), log.entries(last + 1, last + 9)),
        "first_index_of_term": {t: log.first_index_of_term(t) for t in terms},
        "by_request": {r: log.by_request(r) for r in rids},
        "by_txn": {t: log.by_txn(t) for t in txns},
        "last_txn": log.last_txn(),
    }


class Pair:
    """A SqliteLog and a MemoryLog fed the same operations."""

    def __init__(self, path) -> None:
        self.path = path
        self.sql = SqliteLog(path)
        self.mem = MemoryLog()

    def do(self, op: str, *args) -> None:
        getattr(self.sql, op)(*args)
        getattr(self.mem, op)(*args)

    def check(self) -> None:
        assert view(self.sql) == view(self.mem)

    def reopen(self) -> None:
        self.sql.close()
        self.sql = SqliteLog(self.path)


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path / "order-1.sqlite3")
    yield p
    p.sql.close()


# --- same answers -------------------------------------------------------------------------


def test_an_empty_log(pair):
    pair.check()
    assert view(pair.sql)["term_at"] == [None, 0, None, None]  # indices -1, 0, 1, 2
    assert (pair.sql.last_txn(), pair.sql.hard_state()) == (0, (0, None))
    assert pair.sql.first_index_of_term(1) == pair.mem.first_index_of_term(1) == 1


def test_append_with_no_ops(pair):
    pair.do("append", [entry(1, 1), entry(2, 1, trade(0)), entry(3, 1, trade(1))])
    pair.check()
    pair.do("append", [entry(4, 2), entry(5, 2, trade(2)), entry(6, 3, trade(3))])
    pair.check()
    assert pair.sql.last_txn() == 3
    assert pair.sql.by_request("req-1") == entry(3, 1, trade(1))
    assert pair.sql.by_txn(2) == entry(5, 2, trade(2))
    assert pair.sql.first_index_of_term(2) == 4
    assert pair.sql.term_at(6) == 3 and pair.sql.term_at(7) is None


def test_truncate_and_replace(pair):
    pair.do("append", [entry(i, 1, trade(i - 1)) for i in range(1, 6)])
    pair.do("append", [entry(4, 2, trade(10)), entry(5, 2)], 4)
    pair.check()
    assert pair.sql.by_request("req-3") is None and pair.sql.by_txn(3) is None  # truncated away
    assert pair.sql.by_txn(10).index == 4
    assert pair.sql.last_txn() == 10


def test_truncate_only(pair):
    pair.do("append", [entry(i, 1, trade(i - 1)) for i in range(1, 6)])
    pair.do("append", [], 3)
    pair.check()
    assert (pair.sql.last_index(), pair.sql.last_txn()) == (2, 1)
    pair.do("append", [], 1)
    pair.check()
    assert (pair.sql.last_index(), pair.sql.last_term(), pair.sql.last_txn()) == (0, 0, 0)


def test_a_truncated_request_id_may_be_written_again(pair):
    pair.do("append", [entry(1, 1, trade(0, "dup"))])
    pair.do("append", [entry(1, 2, trade(0, "dup"))], 1)
    pair.check()
    assert pair.sql.by_request("dup").term == 2


def test_staged_entries_are_visible_before_the_flush(pair):
    pair.do("append", [entry(1, 1, trade(0))])
    pair.do("stage", [entry(2, 2), entry(3, 2, trade(1))])
    pair.check()
    assert pair.sql.by_txn(1).index == 3
    pair.do("stage", [entry(4, 2, trade(2))])
    pair.check()
    pair.do("flush")
    pair.check()
    pair.do("flush")  # nothing staged: nothing happens
    pair.check()


def test_append_flushes_what_was_staged_first(pair):
    pair.do("stage", [entry(1, 1, trade(0))])
    pair.do("append", [entry(2, 1, trade(1))])
    pair.check()
    pair.reopen()
    pair.check()


def test_append_with_truncation_after_a_stage(pair):
    pair.do("stage", [entry(1, 1, trade(0)), entry(2, 1, trade(1))])
    pair.do("append", [entry(2, 2, trade(5))], 2)
    pair.check()


def test_hard_state(pair):
    pair.do("save_hard_state", 3, 2)
    pair.check()
    pair.do("save_hard_state", 4, None)
    pair.check()
    assert pair.sql.hard_state() == (4, None)


def test_entries_are_clamped_to_the_log(pair):
    pair.do("append", [entry(i, 1) for i in range(1, 4)])
    pair.do("stage", [entry(4, 1)])
    for lo, hi in [(-5, 2), (0, 0), (2, 2), (3, 10), (5, 9), (3, 1), (1, -1)]:
        assert pair.sql.entries(lo, hi) == pair.mem.entries(lo, hi), (lo, hi)


@pytest.mark.parametrize("seed", range(12))
def test_random_operations_give_the_same_answers(tmp_path, seed):
    rng = random.Random(seed)
    pair = Pair(tmp_path / "log.sqlite3")
    try:
        term, txn = 1, 0
        for _ in range(25):
            last = pair.mem.last_index()
            op = rng.choice(["append", "append", "stage", "flush", "truncate", "hard", "term", "reopen"])
            if op in ("append", "stage"):
                batch = []
                for i in range(rng.randint(0, 4)):
                    roll = rng.random()
                    t = None if roll < 0.3 else refusal(f"no-{seed}-{last}-{i}") if roll < 0.4 else trade(txn)
                    txn += t is not None and t.txn is not None
                    batch.append(entry(last + 1 + i, term, t))
                pair.do(op, batch)
            elif op == "flush":
                pair.do("flush")
            elif op == "truncate" and last:
                cut = rng.randint(max(1, pair.mem.last_index() - 3), last)
                term += 1
                keep = [entry(cut + i, term) for i in range(rng.randint(0, 2))]
                pair.do("append", keep, cut)
            elif op == "hard":
                pair.do("save_hard_state", term, rng.choice([None, 1, 2, 3]))
            elif op == "term":
                term += 1
            elif op == "reopen":
                pair.do("flush")  # close() flushes too; keep MemoryLog's view the same
                pair.reopen()
            pair.check()
    finally:
        pair.sql.close()


def test_refusals_and_the_genesis_are_stored_and_read_back(pair):
    pair.do("append", [GENESIS, entry(2, 1, trade(1)), entry(3, 1, refusal("no")), entry(4, 1, trade(2))])
    pair.check()
    pair.reopen()
    pair.check()
    assert pair.sql.entries(1, 1) == [GENESIS]
    assert pair.sql.by_request("no") == entry(3, 1, refusal("no"))
    assert pair.sql.by_txn(2).index == 4 and pair.sql.last_txn() == 2


# --- the book -----------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sql", "mem"])
def test_the_book_is_written_with_the_next_write_and_survives_a_reopen(pair, store):
    log = getattr(pair, store)
    log.append([GENESIS, entry(2, 1, trade(1, quantity=5))])
    book = Book()
    for e in log.entries(1, 2):
        book.apply(e)
    log.save_book(book)
    if store == "sql":
        assert SqliteLog(pair.path).load_book().applied == 0  # not written on its own
    log.save_hard_state(1, 1)  # the next write carries it
    if store == "sql":
        pair.reopen()
        log = pair.sql
    loaded = log.load_book()
    assert (loaded.applied, loaded.last_txn) == (2, 1)
    assert loaded.all() == book.all()
    assert loaded.get("GameStart") == Stock("GameStart", 15.99, 95, 5, 2)


def test_the_book_is_written_once_enough_entries_were_folded_since_it_last_was(tmp_path, monkeypatch):
    from order import store

    monkeypatch.setattr(store, "BOOK_EVERY", 3)
    path = tmp_path / "order-1.sqlite3"
    log = SqliteLog(path)
    book = Book()
    log.append([GENESIS])
    book.apply(GENESIS)
    for index in range(2, 7):
        log.append([entry(index, 1, trade(index - 1))])
        book.apply(log.entries(index, index)[0])
        log.save_book(book)
        log.save_hard_state(1, 1)
        written = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'applied'").fetchone()
        assert (written[0] if written else 0) == (3 if 3 <= index < 6 else 6 if index >= 6 else 0), index
    log.close()


def test_a_crash_loses_an_unwritten_book_and_a_start_folds_again_from_what_was_written(pair, monkeypatch):
    from order import store

    monkeypatch.setattr(store, "BOOK_EVERY", 1)
    pair.do("append", [GENESIS])
    book = Book()
    book.apply(GENESIS)
    pair.do("save_book", book)
    pair.do("flush")  # nothing staged: the memory log writes the book; SQLite needs a transaction
    pair.do("save_hard_state", 1, 1)
    book.apply(entry(2, 1, trade(1)))
    pair.do("save_book", book)
    pair.sql.db.close()  # the process dies before the next write
    pair.sql = SqliteLog(pair.path)
    pair.mem.lose_unflushed()
    for log in (pair.sql, pair.mem):
        assert log.load_book().applied == 1


def test_a_restart_that_distrusts_entries_the_book_folded_starts_the_book_again(tmp_path):
    path = tmp_path / "order-1.sqlite3"
    log = SqliteLog(path)
    log.append([GENESIS, entry(2, 1, trade(1)), entry(3, 1, trade(2))])
    book = Book()
    for e in log.entries(1, 3):
        book.apply(e)
    log.save_book(book)
    log.save_hard_state(1, 1)
    log.close()
    kept = SqliteLog(path, distrust_after=3)  # the book folded nothing dropped: it stays
    assert kept.load_book().applied == 3
    kept.close()
    again = SqliteLog(path, distrust_after=2)
    assert again.last_index() == 2 and again.load_book().applied == 0  # folded again from the log at start
    again.close()


# --- the UNIQUE constraints -------------------------------------------------------------------


def test_a_duplicate_request_id_is_refused_and_nothing_is_written(pair):
    pair.do("append", [entry(1, 1, trade(0, "r"))])
    with pytest.raises(sqlite3.IntegrityError):
        pair.sql.append([entry(2, 1), entry(3, 1, trade(1, "r"))])
    with pytest.raises(ValueError):
        pair.mem.append([entry(2, 1, trade(1, "r"))])
    assert pair.sql.last_index() == 1
    assert pair.sql.by_request("r").index == 1
    pair.reopen()
    assert pair.sql.last_index() == 1
    assert pair.sql.entries(1, 10) == [entry(1, 1, trade(0, "r"))]


def test_a_duplicate_transaction_number_is_refused(pair):
    pair.do("append", [entry(1, 1, trade(0, "a"))])
    with pytest.raises(sqlite3.IntegrityError):
        pair.sql.append([entry(2, 1, trade(0, "b"))])
    with pytest.raises(ValueError):
        pair.mem.append([entry(2, 1, trade(0, "b"))])
    assert pair.sql.last_index() == 1 and pair.sql.by_request("b") is None


def test_a_duplicate_inside_one_batch_is_refused_whole(pair):
    with pytest.raises(sqlite3.IntegrityError):
        pair.sql.append([entry(1, 1, trade(0, "r")), entry(2, 1, trade(1, "r"))])
    assert pair.sql.last_index() == 0
    pair.reopen()
    assert pair.sql.entries(1, 10) == []


def test_a_staged_duplicate_is_refused_at_the_flush(pair):
    pair.do("append", [entry(1, 1, trade(0, "r"))])
    pair.sql.stage([entry(2, 1, trade(1, "r"))])
    with pytest.raises(sqlite3.IntegrityError):
        pair.sql.flush()
    pair.reopen()
    assert pair.sql.last_index() == 1


@pytest.mark.parametrize("store", ["sql", "mem"])
def test_entries_must_follow_the_log(pair, store):
    log = getattr(pair, store)
    log.append([entry(1, 1)])
    with pytest.raises(ValueError):
        log.append([entry(3, 1)])
    with pytest.raises(ValueError):
        log.stage([entry(5, 1)])
    with pytest.raises(ValueError):
        log.append([entry(1, 1)])
    assert log.last_index() == 1


def test_truncating_past_the_end_is_refused(pair):
    pair.sql.append([entry(1, 1), entry(2, 1)])
    with pytest.raises(ValueError):
        pair.sql.append([entry(5, 1)], 5)
    assert pair.sql.last_index() == 2


# --- durability -----------------------------------------------------------------------------------


def test_everything_survives_a_reopen(pair):
    pair.do("append", [entry(1, 1), entry(2, 1, trade(0)), entry(3, 2, trade(1))])
    pair.do("save_hard_state", 2, 3)
    pair.do("stage", [entry(4, 2, trade(2))])
    pair.reopen()  # close() flushes what was staged
    pair.check()
    assert pair.sql.hard_state() == (2, 3)
    assert pair.sql.last_txn() == 2


def test_a_crash_loses_only_what_was_staged(pair):
    pair.do("append", [entry(1, 1, trade(0))])
    pair.do("save_hard_state", 1, 1)
    pair.do("stage", [entry(2, 1, trade(1))])
    pair.sql.db.close()  # the process dies: no flush
    pair.sql = SqliteLog(pair.path)
    pair.mem.lose_unflushed()
    pair.check()
    assert pair.sql.last_index() == 1 and pair.sql.by_request("req-1") is None


# --- the conflict back-off ---------------------------------------------------------------------------


def test_first_index_of_a_term_is_the_same_in_both_stores_even_for_a_term_not_in_the_log(pair):
    # The first index whose term is at least the one asked for (len + 1 if none).
    pair.do("append", [entry(1, 1), entry(2, 1), entry(3, 3), entry(4, 3), entry(5, 4)])
    for term in range(0, 6):
        assert pair.sql.first_index_of_term(term) == pair.mem.first_index_of_term(term), term
    assert [pair.mem.first_index_of_term(t) for t in range(0, 6)] == [1, 1, 3, 3, 5, 6]


# --- numbers beyond SQLite's 64-bit integers ---------------------------------------------------------

def test_the_largest_int64_values_are_stored(pair):
    big = 2**63 - 1
    pair.do("save_hard_state", big, None)
    pair.do("append", [entry(1, big, trade(big, "r"))])
    pair.check()
    assert pair.sql.by_txn(big).trade.txn == big and pair.sql.hard_state() == (big, None)




@pytest.mark.parametrize("body", [
    {"v": PROTOCOL_VERSION, "msg": "get_order", "txn": 2**63},
    {"v": PROTOCOL_VERSION, "msg": "vote_request", "term": 2**64 - 1, "candidate": 2, "last_index": 0, "last_term": 0,
     "pre_vote": False},
    {"v": PROTOCOL_VERSION, "msg": "append_entries", "term": 1, "leader": 2, "prev_index": 0, "prev_term": 0, "commit": 0,
     "entries": [{"index": 1, "term": 1, "trade": {"txn": 2**63, "request_id": "r", "name": "A", "quantity": 1,
                                                    "side": "buy"}}]},
], ids=["get_order txn", "vote term", "entry txn"])
def test_a_number_beyond_int64_is_refused_at_the_wire_before_any_store_sees_it(body):
    # SQLite stores signed 64-bit integers; an OverflowError would end the replica's loop.
    with pytest.raises(RemoteProtocolError, match="64-bit"):
        codec.decode(msgpack.packb(body))


# --- the in-memory tail --------------------------------------------------------------------------------


def test_entries_beyond_the_in_memory_tail_read_the_same_from_sqlite(tmp_path, monkeypatch):
    from order import store

    monkeypatch.setattr(store, "TAIL_MAX", 4)
    pair = Pair(tmp_path / "order-1.sqlite3")
    try:
        pair.do("append", [entry(i, 1 + i // 7, trade(i)) for i in range(1, 21)])
        pair.check()  # indices 1..16 come from SQLite, 17..20 from the tail
        assert len(pair.sql._tail) == 4
        pair.do("stage", [entry(21, 3, trade(21)), entry(22, 3, trade(22))])
        pair.check()
        pair.do("append", [entry(10, 4, trade(30, "late"))], 10)  # truncate below the tail
        pair.check()
        pair.reopen()
        pair.check()
        assert pair.sql.by_request("req-5").index == 5 and pair.sql.by_request("req-12") is None
    finally:
        pair.sql.close()
