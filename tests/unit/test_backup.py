"""The backup's pure parts (the replica to copy, the manifest and its checks,
the identity a restored replica gets, the addresses probed), and the copy of
a log that another connection writes all the while. No sockets, no cluster."""

from __future__ import annotations

import socket
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common import config as configuration
from common.protocol import PROTOCOL_VERSION, LogEntry, StockRow, TradeRecord
from common.storage import SCHEMA_VERSION
from order import backup
from order.backup import (
    BackupError, FileFact, Head, LogFacts, build_manifest, check_copy, check_files, check_manifest, choose_replica,
    probe_target, restored_meta,
)
from order.store import SqliteLog


def head(name: str, term: int, index: int, **kw) -> Head:
    return Head(name, Path(f"/data/{name}.sqlite3"), index, term, **kw)


def facts(**kw) -> LogFacts:
    base = {"integrity": "ok", "cluster": "bazaar", "node": "order-2", "schema": SCHEMA_VERSION, "last_index": 10,
            "last_term": 3, "first_index": 1, "entries": 10, "last_txn": 7, "txns": 7, "orders": 8, "trades": 7}
    return LogFacts(**{**base, **kw})


FILES = {backup.LOG_FILE: FileFact(4096, "ab" * 32)}
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


class TestChoosingTheReplica:
    def test_the_most_up_to_date_log_by_last_term_then_last_index(self):
        heads = [head("order-1", 3, 90), head("order-2", 4, 80), head("order-3", 4, 85)]
        assert choose_replica(heads).name == "order-3"

    def test_a_longer_log_of_an_older_term_loses_to_a_newer_term(self):
        # a deposed leader's uncommitted entries make a longer log that may lack committed ones
        assert choose_replica([head("order-1", 2, 500), head("order-2", 3, 400)]).name == "order-2"

    def test_blank_missing_and_unreadable_replicas_are_passed_over(self):
        heads = [head("order-1", 9, 900, blank=True), head("order-2", 0, 0, problem="missing"),
                 head("order-3", 1, 5), head("order-4", 9, 999, problem="cannot be read (boom)")]
        assert choose_replica(heads).name == "order-3"

    def test_none_to_copy_names_where_it_looked(self):
        with pytest.raises(BackupError, match=r"no order replica's database on this host to back up: looked for "
                                              r"/data/order-1.sqlite3, /data/order-2.sqlite3"):
            choose_replica([head("order-1", 0, 0, problem="missing"), head("order-2", 0, 0, problem="missing")])

    def test_none_to_copy_says_why_each_one_will_not_do(self):
        with pytest.raises(BackupError, match=r"order-1.sqlite3: blank.*order-2.sqlite3: holds cluster 'x'"):
            choose_replica([head("order-1", 4, 10, blank=True), head("order-2", 1, 1, problem="holds cluster 'x'")])

    def test_the_one_asked_for(self):
        heads = [head("order-1", 3, 90), head("order-2", 4, 80)]
        assert choose_replica(heads, "order-1").name == "order-1"

    def test_the_one_asked_for_must_hold_a_log(self):
        heads = [head("order-1", 3, 90, blank=True), head("order-2", 0, 0, problem="missing")]
        with pytest.raises(BackupError, match="order-1 .* it is blank"):
            choose_replica(heads, "order-1")
        with pytest.raises(BackupError, match="order-2 .*: missing"):
            choose_replica(heads, "order-2")
        with pytest.raises(BackupError, match="order-7 is not an order replica"):
            choose_replica(heads, "order-7")


class TestManifest:
    def test_it_says_what_the_backup_holds(self):
        manifest = build_manifest(facts(), "order-2", FILES, WHEN)
        assert manifest == {
            "format": "bazaar-backup", "format_version": 1, "cluster": "bazaar", "replica": "order-2",
            "last_index": 10, "last_term": 3, "last_txn": 7, "orders": 8, "trades": 7,
            "created": "2024-05-01T12:30:00.000000Z", "protocol_version": PROTOCOL_VERSION,
            "schema_version": SCHEMA_VERSION,
            "files": {backup.LOG_FILE: {"size": 4096, "sha256": "ab" * 32}},
        }
        assert check_manifest(manifest, "bazaar") == []

    def test_another_clusters_backup_is_refused_saying_what_to_do(self):
        [problem] = check_manifest(build_manifest(facts(cluster="other"), "order-1", FILES, WHEN), "bazaar")
        assert "of cluster 'other'" in problem and "Use a backup of 'bazaar'" in problem

    def test_another_data_layout_is_refused(self):
        manifest = {**build_manifest(facts(), "order-1", FILES, WHEN), "schema_version": SCHEMA_VERSION - 1}
        assert any("data layout" in p for p in check_manifest(manifest, "bazaar"))

    @pytest.mark.parametrize("bad", [None, [], {"format": "something else"}])
    def test_what_is_not_a_manifest(self, bad):
        assert check_manifest(bad, "bazaar") == ["manifest.json is not a Bazaar backup's manifest"]

    def test_a_manifest_missing_keys(self):
        manifest = build_manifest(facts(), "order-1", FILES, WHEN)
        del manifest["last_txn"], manifest["files"]
        assert check_manifest(manifest, "bazaar") == ["manifest.json lacks last_txn, files"]

    @pytest.mark.parametrize("files", [{}, {"other.sqlite3": {"size": 1, "sha256": "x"}},
                                       {backup.LOG_FILE: {"size": 1, "sha256": "x"},
                                        "../evil": {"size": 1, "sha256": "x"}},
                                       {backup.LOG_FILE: {"size": "1", "sha256": "x"}}])
    def test_a_file_list_that_cannot_be_trusted(self, files):
        manifest = {**build_manifest(facts(), "order-1", FILES, WHEN), "files": files}
        assert len(check_manifest(manifest, "bazaar")) == 1


class TestFiles:
    manifest = build_manifest(facts(), "order-1", FILES, WHEN)

    def test_intact(self):
        assert check_files(self.manifest, dict(FILES)) == []

    def test_missing(self):
        assert check_files(self.manifest, {backup.LOG_FILE: None}) == [f"{backup.LOG_FILE} is missing"]

    def test_truncated(self):
        [problem] = check_files(self.manifest, {backup.LOG_FILE: FileFact(1024, "ab" * 32)})
        assert "1,024 bytes, the manifest says 4,096 (truncated" in problem

    def test_a_changed_byte(self):
        [problem] = check_files(self.manifest, {backup.LOG_FILE: FileFact(4096, "cd" * 32)})
        assert "does not match its checksum" in problem


class TestCopy:
    def test_a_sound_copy(self):
        assert check_copy(facts()) == []
        assert check_copy(facts(), build_manifest(facts(), "order-2", FILES, WHEN)) == []

    @pytest.mark.parametrize("change, words", [
        ({"integrity": "*** in database main ***"}, "integrity check"),
        ({"first_index": 2, "entries": 9}, "gap"),
        ({"entries": 9}, "gap"),
        ({"txns": 6}, "transaction numbers have a gap"),
        ({"entries": 0, "first_index": 0, "last_index": 0}, "empty"),
        ({"schema": 2}, "data layout"),
    ])
    def test_a_broken_copy(self, change, words):
        assert any(words in p for p in check_copy(facts(**change)))

    def test_a_copy_that_disagrees_with_its_manifest(self):
        manifest = build_manifest(facts(), "order-2", FILES, WHEN)
        assert check_copy(facts(last_txn=8, txns=8), manifest) == ["it holds last_txn 8, the manifest says 7"]


def test_a_restored_replica_is_its_own_with_no_vote_in_the_last_term_and_not_blank():
    assert dict(restored_meta("order-3", 7)) == {"node": "order-3", "term": 7, "voted_for": None, "blank": 0}


@pytest.mark.parametrize("endpoint, target", [
    ("tcp://127.0.0.1:5561", (socket.AF_INET, ("127.0.0.1", 5561))),
    ("tcp://0.0.0.0:5560", (socket.AF_INET, ("127.0.0.1", 5560))),
    ("tcp://*:5555", (socket.AF_INET, ("127.0.0.1", 5555))),
    ("tcp://[::]:5555", (socket.AF_INET6, ("::1", 5555))),
    ("tcp://[::1]:5555", (socket.AF_INET6, ("::1", 5555))),
    ("tcp://order1.internal:5561", (socket.AF_INET, ("order1.internal", 5561))),
    ("ipc:///run/bazaar/order-1", (socket.AF_UNIX, "/run/bazaar/order-1")),
    ("inproc://order-1", None),
])
def test_where_a_nodes_bind_address_is_probed(endpoint, target):
    assert probe_target(endpoint) == target


def test_every_address_a_node_listens_on_is_probed(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[cluster]\nstocks_csv = "stocks.csv"\n'
        '[broker]\nxsub = "tcp://bus:5555"\nxpub = "tcp://bus:5556"\nxsub_bind = "tcp://0.0.0.0:5555"\n'
        'xpub_bind = "tcp://0.0.0.0:5556"\n[catalog]\nendpoint = "tcp://127.0.0.1:5560"\n'
        '[[order]]\nid = 1\nendpoint = "tcp://127.0.0.1:5561"\n[[order]]\nid = 2\nendpoint = "tcp://127.0.0.1:5562"\n'
        '[frontend]\nhost = "127.0.0.1"\nport = 8000\n')
    config = configuration.load(tmp_path / "config.toml")
    assert backup.bind_addresses(config) == [
        ("broker", "tcp://0.0.0.0:5555"), ("broker", "tcp://0.0.0.0:5556"), ("catalog", "tcp://127.0.0.1:5560"),
        ("order-1", "tcp://127.0.0.1:5561"), ("order-2", "tcp://127.0.0.1:5562"), ("frontend", "tcp://127.0.0.1:8000"),
    ]


def _trades(first: int, count: int, term: int = 1) -> list[LogEntry]:
    return [LogEntry(index=i, term=term, trade=TradeRecord(f"r{i}", "FishCo", 1, "buy" if i % 2 else "sell", i - 1))
            for i in range(first, first + count)]


def test_the_copy_of_a_log_written_all_the_while_is_one_snapshot(tmp_path, monkeypatch):
    """Another connection appends between every two steps of the copy: the
    copy still finishes (SQLite would start it over at every write but for the
    read transaction held across the steps), it is the log as it was when the
    copy began, and it is sound."""
    source = tmp_path / "order-1.sqlite3"
    log = SqliteLog(source, node="order-1", cluster_id="bazaar")
    log.append([LogEntry(index=1, term=1, genesis=[StockRow("FishCo", 9.5, 100, 0)])])
    for first in range(2, 8002, 1000):
        log.append(_trades(first, 1000))
    log.close()
    monkeypatch.setattr(backup.database, "STEP_PAGES", 4)
    asked, appended = threading.Semaphore(0), threading.Semaphore(0)
    done = threading.Event()

    def writer() -> None:  # its own connection, in its own thread, as a replica's process would write
        log = SqliteLog(source, node="order-1", cluster_id="bazaar")
        try:
            while asked.acquire(timeout=10) and not done.is_set():
                log.append(_trades(log.last_index() + 1, 5))
                appended.release()
        finally:
            log.close()

    thread = threading.Thread(target=writer)
    thread.start()
    steps: list[int] = []

    def step(copied: int, total: int) -> None:  # between two steps, the writer commits
        steps.append(copied)
        asked.release()
        assert appended.acquire(timeout=10)

    target = tmp_path / "copy.sqlite3"
    try:
        backup.copy_log(source, target, step)
    finally:
        done.set()
        asked.release()
        thread.join(10)
    assert len(steps) > 20 and steps == sorted(steps)
    copied = backup.inspect(target)
    assert check_copy(copied) == []
    assert (copied.last_index, copied.last_txn, copied.orders) == (8001, 8000, 8000)
    assert not Path(f"{target}-wal").exists() and not Path(f"{target}-journal").exists()
    db = sqlite3.connect(source)
    assert db.execute("SELECT MAX(idx) FROM log").fetchone()[0] == 8001 + 5 * len(steps)
    db.close()
