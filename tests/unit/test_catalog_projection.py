"""The catalog as a projection of the order log (catalog/projection.py) over
its stores (the in-memory one and SQLite, catalog/store.py): pages of
committed entries applied by index, once each, with no gap; lookups that
are never older than asked; a replica to read from whichever is up; a full
disk that changes nothing; the stock list of the CSV (common/config.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from catalog.projection import (
    LOOKUP_WAIT_S, CaughtUp, MemoryCatalogStore, Projection, Publish, Refused, Reply, ToReplica,
)
from catalog.store import SqliteCatalogStore
from common.book import Stock
from common.config import load_stocks
from common.errors import BrokenFold, ConfigError, StorageCorrupt, StorageFull
from common.protocol import (
    CommittedEntries, LogEntry, Lookup, ReadCommitted, StockInfo, StockRow, TradeRecord, TradeStatus,
)
from common.storage import Faults

REPO = Path(__file__).resolve().parents[2]
GENESIS = LogEntry(1, 1, genesis=[StockRow("GameStart", 15.99, 100, 0), StockRow("FishCo", 2.5, 10, 3)])


def trade(index: int, txn: int, name: str = "GameStart", quantity: int = 1, side: str = "buy") -> LogEntry:
    return LogEntry(index, 1, TradeRecord(f"r{index}", name, quantity, side, txn))


def refusal(index: int) -> LogEntry:
    return LogEntry(index, 1, TradeRecord(f"r{index}", "FishCo", 999, "buy", None, TradeStatus.NOT_ENOUGH_STOCK))


def page(*entries: LogEntry, commit: int | None = None, leader: int | None = 3) -> CommittedEntries:
    last = entries[-1].index if entries else 0
    return CommittedEntries(entries=list(entries), commit=last if commit is None else commit, leader=leader)


def projection(store=None, now: float = 0.0) -> Projection:
    return Projection(store or MemoryCatalogStore(), [1, 2, 3], wait_s=0.3, timeout_s=1.0, now=now)


def fetched(outputs: list) -> ToReplica:
    (fetch,) = [o for o in outputs if isinstance(o, ToReplica)]
    return fetch


# --- applying the log -------------------------------------------------------------


def test_a_blank_catalog_asks_for_the_log_from_its_start_and_folds_it():
    p = projection()
    first = fetched(p.start(0.0))
    assert first.msg == ReadCommitted(after=0, limit=1000, wait_ms=300)
    out = p.on_entries(3, page(GENESIS, LogEntry(2, 1), trade(3, 1, quantity=4), refusal(4)), 0.01)
    assert p.book.applied == 4 and p.book.get("GameStart") == Stock("GameStart", 15.99, 96, 4, 3)
    (published,) = [o.msg for o in out if isinstance(o, Publish)]
    assert (published.prev, published.index) == (0, 4)
    assert {c.name: c.quantity for c in published.changes} == {"GameStart": 96, "FishCo": 10}
    assert CaughtUp(4) in out
    assert fetched(out).msg.after == 4  # and asks for more at once (a long poll)
    assert p.store.applied == 4 and p.store.stocks == p.book.all()


def test_entries_already_applied_are_skipped_and_a_gap_changes_nothing():
    p = projection()
    p.start(0.0)
    p.on_entries(3, page(GENESIS, trade(2, 1)), 0.0)
    p.on_entries(3, page(trade(2, 1), trade(3, 2)), 0.0)  # 2 again (a duplicated page): applied once
    assert p.book.get("GameStart").quantity == 98 and p.book.applied == 3
    out = p.on_entries(3, page(trade(5, 4), commit=5), 0.0)  # 4 missing: nothing, and ask from 3 again
    assert p.book.applied == 3 and not [o for o in out if isinstance(o, Publish)]
    assert fetched(out).msg.after == 3


def test_an_entry_that_breaks_the_fold_stops_the_catalog_rather_than_guess():
    p = projection()
    p.start(0.0)
    p.on_entries(3, page(GENESIS), 0.0)
    with pytest.raises(BrokenFold, match="transaction number 5, after 0"):
        p.on_entries(3, page(trade(2, 5)), 0.0)
    assert p.book.applied == 1 and p.store.applied == 1  # the page's changes went nowhere


def test_the_catalog_reads_from_the_leader_a_reply_names_and_moves_on_when_a_fetch_is_lost():
    p = projection()
    assert fetched(p.start(0.0)).replica == 3
    out = p.on_entries(3, page(GENESIS, leader=2), 0.0)
    assert fetched(out).replica == 2  # replica 3 says 2 leads: ask the freshest
    assert p.tick(0.5) == []
    out = p.tick(1.3)  # no answer within wait + timeout: the next replica
    assert fetched(out).replica == 3
    out = p.replica_down(3, 1.4)  # its connection dropped: the next one at once
    assert fetched(out).replica == 1


def test_a_full_disk_changes_nothing_and_pauses_fetching_until_a_write_succeeds():
    class FullDisk(MemoryCatalogStore):
        full = False

        def commit(self, stocks, applied, last_txn):
            if self.full:
                raise StorageFull("storage full: cannot write catalog.sqlite3 (0 KiB free)", "catalog.sqlite3", 0)
            super().commit(stocks, applied, last_txn)

    store = FullDisk()
    p = projection(store)
    p.start(0.0)
    p.on_entries(3, page(GENESIS), 0.0)
    store.full = True
    out = p.on_entries(3, page(trade(2, 1)), 0.0)
    assert [type(o) for o in out] == [Refused] and p.book.applied == 1 and p.book.get("GameStart").quantity == 100
    assert not [o for o in p.tick(5.0) if isinstance(o, ToReplica)]  # no fetch while the disk is full
    store.full = False
    assert fetched(p.storage_recovered(6.0)).msg.after == 1


# --- lookups ------------------------------------------------------------------------


def test_a_lookup_is_answered_from_memory_as_of_the_index_applied():
    p = projection()
    p.start(0.0)
    p.on_entries(3, page(GENESIS, trade(2, 1, quantity=3)), 0.0)
    (reply,) = p.on_lookup("ref", Lookup("GameStart", min_index=2), 0.0)
    assert reply == Reply("ref", StockInfo("GameStart", 15.99, 97, 3, version=2, index=2))
    (reply,) = p.on_lookup("ref", Lookup("Nope"), 0.0)
    assert reply.msg.code == "stock_not_found"


def test_a_lookup_beyond_the_index_applied_waits_for_it_then_says_behind():
    p = projection()
    p.start(0.0)
    p.on_entries(3, page(GENESIS), 0.0)
    assert p.on_lookup("a", Lookup("GameStart", min_index=2), 0.0) == []  # held: the next page brings it
    assert p.on_lookup("b", Lookup("GameStart", min_index=3), 0.0) == []
    out = p.on_entries(3, page(trade(2, 1)), 0.01)
    (answered,) = [o for o in out if isinstance(o, Reply)]
    assert answered.ref == "a" and answered.msg.version == 2
    (late,) = p.tick(LOOKUP_WAIT_S + 0.01)
    assert late.ref == "b" and late.msg.code == "behind" and late.msg.index == 2


def test_a_blank_or_catching_up_catalog_says_behind_at_once():
    p = projection()
    p.start(0.0)
    (reply,) = p.on_lookup("a", Lookup("GameStart"), 0.0)
    assert reply.msg.code == "behind" and reply.msg.index == 0  # no genesis: it knows no stock
    p.on_entries(3, page(GENESIS, trade(2, 1), commit=5000), 0.0)  # far from the commit index
    (reply,) = p.on_lookup("b", Lookup("GameStart"), 0.0)
    assert reply.msg.code == "behind" and "catching up" in reply.msg.message


# --- the SQLite store -------------------------------------------------------------------


def test_the_sqlite_store_keeps_the_table_and_its_index_together(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    store = SqliteCatalogStore(path, cluster_id="c1")
    p = projection(store)
    p.start(0.0)
    p.on_entries(3, page(GENESIS, trade(2, 1, "FishCo", 4, "sell")), 0.0)
    store.close()
    again = SqliteCatalogStore(path, cluster_id="c1")
    try:
        book = again.load()
        assert (book.applied, book.last_txn) == (2, 1)
        assert book.get("FishCo") == Stock("FishCo", 2.5, 14, 7, 2)
        assert again.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: rebuilt from the log if lost
    finally:
        again.close()


def test_a_failed_sqlite_write_writes_nothing(tmp_path):
    trigger = tmp_path / "fault"
    store = SqliteCatalogStore(tmp_path / "catalog.sqlite3", faults=Faults(trigger))
    store.commit([Stock("A", 1.0, 5, 0, 1)], 1, 0)
    trigger.write_text("full")
    with pytest.raises(StorageFull):
        store.commit([Stock("A", 1.0, 4, 1, 2)], 2, 1)
    book = store.load()
    assert book.applied == 1 and book.get("A").quantity == 5
    store.close()


def test_a_catalog_database_of_the_two_store_design_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value NOT NULL);"
                     "INSERT INTO meta VALUES ('cluster', 'bazaar'), ('node', 'catalog'), ('seq', 7), ('fence', 2);"
                     "CREATE TABLE journal(request_id TEXT PRIMARY KEY);")
    db.close()
    (tmp_path / "catalog.id").write_text("catalog of cluster bazaar\n")
    with pytest.raises(StorageCorrupt, match=r"earlier Bazaar \(data layout 2.*reset catalog"):
        SqliteCatalogStore(path)


# --- the stock list (common.config.load_stocks) ---------------------------------------


def test_the_repository_csv_loads():
    rows = load_stocks(REPO / "catalog" / "stocks.csv")
    assert len(rows) == 15 and rows[0][0] == "GameStart"


@pytest.mark.parametrize("text,words", [
    ("name,price,quantity,volume\n", "lists no stocks"),
    ("name,price,quantity,volume\nA,abc,1,0\n", ":2:"),
    ("name,price,quantity,volume\nA,1.0,1,0\nB,1.0,x,0\n", ":3:"),
    ("name,price,quantity,volume\nA,1.0,1\n", ":2:"),          # a missing column
    ("name,price,quantity\nA,1.0,1\n", ":2:"),                 # no volume column at all
    ("name,price,quantity,volume\nA,1.0,-1,0\n", "not negative"),
    ("name,price,quantity,volume\nA,nan,1,0\n", "finite"),
    ("name,price,quantity,volume\n ,1.0,1,0\n", "name must be set"),
    ("name,price,quantity,volume\nA,1.0,1,0\nB,1.0,1,0\nA,2.0,2,0\n", "A more than once"),
])
def test_a_bad_csv_is_a_config_error(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_stocks(path)
    assert words in str(info.value)


def test_a_missing_csv_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="stocks_csv"):
        load_stocks(tmp_path / "nope.csv")


def test_a_fetch_that_could_not_leave_goes_to_the_next_replica_shortly_or_to_one_that_comes_up():
    p = projection()
    first = fetched(p.start(0.0))
    assert p.send_failed(first.replica, 0.0) == [] and p.fetch is None
    assert p.next_deadline() == pytest.approx(0.05)
    again = fetched(p.tick(0.05))
    assert again.replica != first.replica
    p.send_failed(again.replica, 0.06)
    assert fetched(p.replica_up(2, 0.07)).replica == 2  # its connection came up: at once
    assert p.replica_up(1, 0.08) == []  # a fetch is out already


def test_a_catalog_no_replica_answers_or_whose_disk_is_full_answers_behind_not_from_a_frozen_table():
    p = projection()
    p.start(0.0)
    p.on_entries(3, page(GENESIS), 0.0)
    assert p.on_lookup("a", Lookup("FishCo"), 0.0)[0].msg.name == "FishCo"
    p.tick(1.31)  # the fetch went unanswered: the log may be far ahead by now
    (reply,) = p.on_lookup("b", Lookup("FishCo"), 1.4)
    assert reply.msg.code == "behind"
    p.on_entries(2, page(commit=1), 1.5)  # a replica answers: nothing new, current again
    assert p.on_lookup("c", Lookup("FishCo"), 1.5)[0].msg.name == "FishCo"
