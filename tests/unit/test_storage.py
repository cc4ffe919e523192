"""Storage faults at the store level (common/storage.py and both stores), on
temporary SQLite files: data that cannot be trusted is refused at start with
a message that says what to do; a full disk writes nothing; a failed fsync
leaves the store as the file holds it, and a restart that distrusts what came
after the last good sync drops it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from catalog.store import SqliteCatalogStore
from common.errors import StorageCorrupt, StorageFailed, StorageFull
from common.protocol import LogEntry, TradeRecord
from common import storage
from common.storage import Faults
from order import store as order_store
from order.store import SqliteLog

def entry(index: int, txn: int | None = None) -> LogEntry:
    trade = None if txn is None else TradeRecord(f"r{txn}", "FishCo", 1, "buy", txn)
    return LogEntry(index, 1, trade)


def log_at(path: Path, **kw) -> SqliteLog:
    return SqliteLog(path, node="order-2", cluster_id="c1", **kw)


# --- refusing data that cannot be trusted --------------------------------------------------------------------


def test_a_new_replica_is_blank_until_it_says_it_caught_up(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    log = log_at(path)
    assert log.is_blank()
    log.clear_blank()
    log.close()
    log = log_at(path)
    assert not log.is_blank() and (tmp_path / "order-2.id").exists()
    log.close()


def test_a_creation_cut_short_starts_blank_again(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    db = sqlite3.connect(path)  # the tables were made, then the node died before its identity was written
    db.executescript(order_store.SCHEMA)
    db.close()
    log = log_at(path)
    assert log.is_blank() and (tmp_path / "order-2.id").exists()
    log.close()


def test_a_database_that_lost_its_identity_is_refused(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    log = log_at(path)
    log.append([entry(1, 1)])
    log.close()
    db = sqlite3.connect(path)  # as when the write-ahead log that held the identity is lost
    db.execute("DELETE FROM meta")
    db.commit()
    db.close()
    with pytest.raises(StorageCorrupt, match=r"no record of whose data.*run.sh reset order-2"):
        log_at(path)


def test_a_full_disk_while_creating_is_a_full_disk_not_damage(tmp_path, monkeypatch):
    real_connect = sqlite3.connect

    class FullDisk:
        """A connection whose disk fills at the first insert."""

        def __init__(self, *args, **kwargs) -> None:
            self.db = real_connect(*args, **kwargs)

        def execute(self, sql, *args):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *args)

        def executemany(self, sql, *args):
            return self.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.db, name)

    monkeypatch.setattr(storage.sqlite3, "connect", FullDisk)
    with pytest.raises(StorageFull, match=r"storage full: cannot write .*order-2.sqlite3"):
        log_at(tmp_path / "order-2.sqlite3")
    monkeypatch.undo()
    assert not (tmp_path / "order-2.id").exists()
    log = log_at(tmp_path / "order-2.sqlite3")  # space is back: it starts, blank
    assert log.is_blank()
    log.close()


def test_a_database_deleted_while_the_node_was_down_is_refused(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    log_at(path).close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StorageCorrupt, match=r"missing.*run.sh reset order-2"):
        log_at(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_database_is_refused(tmp_path, damage):
    path = tmp_path / "order-2.sqlite3"
    log = log_at(path)
    log.append([entry(i, i) for i in range(1, 200)])
    log.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not a database at all" * 400)
    Path(f"{path}-wal").unlink(missing_ok=True)
    with pytest.raises(StorageCorrupt, match="run.sh reset order-2"):
        log_at(path)


def test_another_nodes_database_is_refused(tmp_path):
    mine, theirs = tmp_path / "order-2.sqlite3", tmp_path / "other" / "order-3.sqlite3"
    log_at(mine).close()
    SqliteLog(theirs, node="order-3", cluster_id="c1").close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{mine}{suffix}").unlink(missing_ok=True)
        if Path(f"{theirs}{suffix}").exists():
            Path(f"{mine}{suffix}").write_bytes(Path(f"{theirs}{suffix}").read_bytes())
    with pytest.raises(StorageCorrupt, match="'order-3', not 'order-2'"):
        log_at(mine)


def test_another_clusters_catalog_is_refused(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    SqliteCatalogStore(path, cluster_id="c1").close()
    with pytest.raises(StorageCorrupt, match="'c1', not 'c2'"):
        SqliteCatalogStore(path, cluster_id="c2")


def test_a_replica_database_of_the_two_store_design_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    db = sqlite3.connect(path)  # what version 2 wrote: meta without a 'schema' row, a log with a seq column
    db.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
                     "INSERT INTO meta VALUES ('cluster', 'c1'), ('node', 'order-2'), ('term', 3);"
                     "CREATE TABLE log(idx INTEGER PRIMARY KEY, term, txn, request_id, name, quantity, side, seq);")
    db.close()
    (tmp_path / "order-2.id").write_text("order-2 of cluster c1\n")
    with pytest.raises(StorageCorrupt, match=r"earlier Bazaar \(data layout 2; this one reads layout 3.*reset all"):
        log_at(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'term'").fetchone() == (3,)  # untouched:
    assert [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["meta", "log"]


# --- a full disk and a failing one ---------------------------------------------------------------------------


def arm(tmp_path: Path, kind: str) -> Faults:
    trigger = tmp_path / "fault"
    trigger.write_text(kind)
    return Faults(trigger)


def test_a_full_disk_writes_nothing_and_the_next_write_succeeds(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    faults = Faults(tmp_path / "fault")
    log = log_at(path, faults=faults)
    log.append([entry(1, 1)])
    (tmp_path / "fault").write_text("full")
    log.stage([entry(2, 2)])
    with pytest.raises(StorageFull, match=r"storage full: cannot write .*order-2.sqlite3"):
        log.flush()
    assert log.last_index() == 1 and log.by_request("r2") is None  # the staged entry is gone
    log.append([entry(2, 2)])  # space is back
    assert log.synced_index == 2
    log.close()


def test_after_a_failed_fsync_a_restart_drops_what_came_after_the_last_good_sync(tmp_path):
    path = tmp_path / "order-2.sqlite3"
    faults = Faults(tmp_path / "fault")
    log = log_at(path, faults=faults)
    log.append([entry(1, 1), entry(2, 2)])
    (tmp_path / "fault").write_text("eio")
    with pytest.raises(StorageFailed, match="fsync"):
        log.append([entry(3, 3)])
    good = log.synced_index
    assert good == 2 and log.last_index() == 3  # the file holds it, but it may not be on the disk
    log.db.close()
    log = log_at(path, distrust_after=good)
    assert log.last_index() == 2 and log.by_request("r3") is None and log.by_txn(2).index == 2
    log.close()


def test_a_catalog_restarts_from_whatever_its_file_holds_after_a_failed_write(tmp_path):
    """The catalog keeps nothing it cannot fetch again: after a failed write
    it restarts from what its file holds (one whole write or the other, never
    half of one) and fetches the rest from the replicas."""
    path = tmp_path / "catalog.sqlite3"
    store = SqliteCatalogStore(path, faults=Faults(tmp_path / "fault"))
    store.commit([], 5, 2)
    (tmp_path / "fault").write_text("eio")
    with pytest.raises(StorageFailed):
        store.commit([], 6, 3)
    store.db.close()
    again = SqliteCatalogStore(path)
    assert (again.load().applied, again.load().last_txn) in ((5, 2), (6, 3))
    again.close()
