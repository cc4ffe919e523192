"""Online backup and restore (``python -m order.backup``) with real processes.

A backup taken while clients trade through the HTTP API restores, after
every node was SIGKILLed and the whole data directory deleted, into a
cluster that holds every trade acknowledged before the backup began, with no
gap, a catalog equal to the fold of the restored log, and the next
transaction number for the next trade. Every refusal of a restore (another
cluster's backup, a damaged or truncated one, a data directory in use or not
empty, a node still running) changes nothing: the data directory is the same,
byte for byte. A disk that fills up makes the backup fail with one clear line
and nothing that looks like a backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checker import FinalState, judge
from harness.cluster import Cluster, wait_until
from harness.history import History, Load
from harness.process import ROOT, Process
from order import backup


def run_tool(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m order.backup ...``, as run.sh runs it."""
    return subprocess.run([sys.executable, "-m", "order.backup", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def contents(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` and the sha256 of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("restore refused (nothing was changed): "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def log_rows(path: Path) -> list[tuple]:
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT idx, term, txn, request_id, name, quantity, side, status FROM log "
                          "ORDER BY idx").fetchall()
    finally:
        db.close()


class TestBackupUnderLoadThenLoseEveryDisk:
    """Trades flow while the backup copies; then every node dies and every disk is lost."""

    def test_a_restored_cluster_holds_every_trade_acknowledged_before_the_backup(self, cluster_factory, tmp_path,
                                                                                 monkeypatch):
        cluster = cluster_factory(start=False)
        cluster.seed(20_000)  # a log of some hundreds of pages, so that the copy takes many steps
        cluster.start()
        history = History()
        load = Load(history, cluster.http_addresses, clients=3, max_ops=100_000, max_seconds=120)
        saved: dict = {}
        # Small steps, and before each one the clients get at least one more trade acknowledged:
        # the source is written between every two steps of the copy (which, without the read
        # transaction pinning its snapshot, would make SQLite start the copy over, step after step).
        monkeypatch.setattr(backup.database, "STEP_PAGES", 8)
        steps: list[int] = []

        def progress(pages: int):
            def step(done: int, total: int) -> None:
                acked = load.acked()
                steps.append(acked)
                wait_until(lambda: load.acked() > acked, 30, "a trade acknowledged during the copy")
            return step

        with load:
            wait_until(lambda: load.acked() >= 50, 30, "50 trades before the backup")
            began = history.now()
            before = [op for op in history.ops if op.status == "ok" and op.completed is not None
                      and op.completed < began]
            saved = backup.save(cluster.config, tmp_path / "backup", progress=progress)
            ended = history.now()
            after = load.acked()
            wait_until(lambda: load.acked() >= after + 30, 30, "30 more trades after the backup")
        assert len(steps) > 20 and steps[-1] > steps[0], steps
        during = [op for op in history.ops if op.status == "ok" and began < op.completed < ended]
        assert len(during) >= len(steps) - 1
        manifest = backup.verify(cluster.config, tmp_path / "backup")[0]
        assert manifest == saved
        assert manifest["cluster"] == cluster.cluster_id and manifest["replica"].startswith("order-")
        assert manifest["last_txn"] >= max(op.txn for op in before)
        assert manifest["orders"] >= 20_000 + len(before)

        for node in cluster.nodes.values():
            node.kill()
        lost = cluster.workdir / "data"
        shutil.rmtree(lost)

        restored = run_tool("restore", tmp_path / "backup", "--config", cluster.config_path,
                            "--run-dir", tmp_path / "no-run-dir")
        assert restored.returncode == 0, restored.stderr
        assert f"restored {manifest['orders']:,} orders" in restored.stdout
        assert not (lost / "catalog.sqlite3").exists()
        backed_up = log_rows(tmp_path / "backup" / backup.LOG_FILE)
        for i in range(1, 4):
            assert log_rows(lost / f"order-{i}.sqlite3") == backed_up

        cluster.start()
        cluster.wait_lookups()
        api = cluster.http()
        for op in before:  # every trade acknowledged before the backup began reads back unchanged
            reply = api.get(f"/orders/{op.txn}")
            assert reply.status == 200 and reply.data == {"transaction_number": op.txn, "name": op.name,
                                                          "quantity": op.quantity, "type": op.side}, (op, reply)
        nxt = api.post("/orders", {"name": "GameStart", "quantity": 1, "type": "sell"},
                       headers={"Idempotency-Key": "after-the-restore"})
        assert nxt.status == 200 and nxt.data["transaction_number"] == manifest["last_txn"] + 1, nxt.body

        def identical() -> bool:
            logs = [cluster.order_log(i) for i in range(1, 4)]
            return logs[0] == logs[1] == logs[2] and logs[0][-1][1] == "after-the-restore"

        wait_until(identical, 30, "every replica to hold the same log")
        for i in range(1, 4):  # indices 1..last without a gap, and the backup a prefix of the log
            rows = log_rows(lost / f"order-{i}.sqlite3")
            assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
            assert rows[:len(backed_up)] == backed_up
        state = FinalState(logs={i: cluster.order_log(i) for i in range(1, 4)}, initial=cluster.genesis(),
                           catalog={name: row[1] for name, row in cluster.stocks().items()})
        violations = judge(state, before)  # no gap, nothing acknowledged before lost, catalog == fold
        assert not violations, [f"{v.promise}: {v.message}" for v in violations]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A cluster's data (a seeded history, never started) and a backup of it."""
    cluster = Cluster(tmp_path_factory.mktemp("stopped"))
    cluster.seed(2_000)
    made = run_tool("save", cluster.workdir / "backup", "--config", cluster.config_path)
    assert made.returncode == 0, made.stderr
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def case(stopped, tmp_path):
    """Its own copy of the backup and of the data directory, and the restore command for them."""
    copy = tmp_path / "backup"
    shutil.copytree(stopped.workdir / "backup", copy)
    data = tmp_path / "data"
    shutil.copytree(stopped.workdir / "data", data)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    class Case:
        backup = copy
        before = contents(data)

        @staticmethod
        def restore(*extra: object) -> subprocess.CompletedProcess:
            return run_tool("restore", copy, "--config", stopped.config_path, "--data-dir", data,
                            "--run-dir", run_dir, *extra)

        @staticmethod
        def unchanged() -> bool:
            return contents(data) == Case.before

    Case.data, Case.run_dir = data, run_dir
    return Case


class TestRestoreRefuses:
    """Each refusal says what to do and leaves the data directory byte for byte as it was."""

    def test_a_backup_of_another_cluster(self, stopped, case, tmp_path):
        other = Cluster(tmp_path / "other")
        other.seed(10)
        made = run_tool("save", tmp_path / "other-backup", "--config", other.config_path)
        assert made.returncode == 0, made.stderr
        result = run_tool("restore", tmp_path / "other-backup", "--config", stopped.config_path,
                          "--data-dir", case.data, "--run-dir", case.run_dir, "--force")
        assert_refused(result, f"of cluster {other.cluster_id!r}", f"cluster {stopped.cluster_id!r}")
        assert case.unchanged()

    def test_a_backup_with_a_flipped_byte(self, case):
        path = case.backup / backup.LOG_FILE
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        assert_refused(case.restore("--force"), "does not match its checksum")
        assert case.unchanged()

    def test_a_truncated_backup(self, case):
        path = case.backup / backup.LOG_FILE
        path.write_bytes(path.read_bytes()[:4096 * 3])
        assert_refused(case.restore("--force"), "truncated")
        assert case.unchanged()

    def test_a_backup_whose_log_is_missing(self, case):
        (case.backup / backup.LOG_FILE).unlink()
        assert_refused(case.restore("--force"), f"{backup.LOG_FILE} is missing")
        assert case.unchanged()

    def test_a_backup_that_never_finished(self, case):
        (case.backup / backup.MANIFEST).rename(case.backup / (backup.MANIFEST + backup.PARTIAL))
        assert_refused(case.restore("--force"), "not a complete backup")
        assert case.unchanged()

    def test_a_data_directory_that_is_not_empty_without_force(self, case):
        assert_refused(case.restore(), "is not empty", "--force")
        assert case.unchanged()

    def test_a_node_whose_pid_file_names_a_live_process(self, case, tmp_path):
        sleeper = Process("sleeper", ["-c", "import time; time.sleep(120)"], tmp_path / "sleeper.log").start()
        try:
            (case.run_dir / "order-2.pid").write_text(f"{sleeper.pid}\n")
            (case.run_dir / "catalog.pid").write_text("999999999\n")  # long gone: not a sign
            assert_refused(case.restore("--force"), f"order-2 runs (pid {sleeper.pid}", "./run.sh stop")
            assert "catalog" not in case.restore("--force").stderr
        finally:
            sleeper.kill()
        assert case.unchanged()

    def test_something_listening_on_a_nodes_address(self, stopped, case):
        endpoint = stopped.config.replica(3).endpoint.bind
        host, port = endpoint[len("tcp://"):].rsplit(":", 1)
        with socket.socket() as listener:
            listener.bind((host, int(port)))
            listener.listen()
            assert_refused(case.restore("--force"), f"listens on {endpoint} (order-3's address)")
        assert case.unchanged()

    def test_a_running_cluster(self, cluster_factory, tmp_path):
        cluster = cluster_factory()
        assert cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}).status == 200
        made = run_tool("save", tmp_path / "live-backup", "--config", cluster.config_path)
        assert made.returncode == 0 and "saved 1 order (" in made.stdout, made.stderr
        for node in cluster.nodes.values():
            node.pause()  # hung, its sockets open: nothing writes while the data is compared
        try:
            data = cluster.workdir / "data"
            before = contents(data)
            result = run_tool("restore", tmp_path / "live-backup", "--config", cluster.config_path, "--force",
                              "--run-dir", tmp_path / "none")
            assert_refused(result, "the cluster is running", "order-1's address", "catalog's address",
                           "frontend's address", "./run.sh stop")
            assert contents(data) == before
        finally:
            for node in cluster.nodes.values():
                node.resume()


class TestRestoreReplaces:
    """With --force, every node's files are replaced; nothing else in the directory is touched."""

    def test_force_gives_every_replica_the_log_as_its_own_and_removes_the_catalog(self, stopped, case):
        (case.data / "notes.txt").write_text("an operator's file\n")
        result = case.restore("--force")
        assert result.returncode == 0, result.stderr
        assert (case.data / "notes.txt").read_text() == "an operator's file\n"
        assert not (case.data / "catalog.sqlite3").exists() and not (case.data / "catalog.id").exists()
        manifest = backup.load_manifest(case.backup)
        for i in range(1, 4):
            path = case.data / f"order-{i}.sqlite3"
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
            meta = dict(db.execute("SELECT key, value FROM meta"))
            db.close()
            assert meta["node"] == f"order-{i}" and meta["cluster"] == stopped.cluster_id
            assert (meta["term"], meta["voted_for"], meta["blank"]) == (manifest["last_term"], None, 0)
            assert (case.data / f"order-{i}.id").exists()
            assert log_rows(path) == log_rows(case.backup / backup.LOG_FILE)
        assert not list(case.data.glob(".restore-*"))


    def test_on_several_hosts_each_replicas_host_restores_its_own(self, stopped, case, tmp_path):
        host = tmp_path / "host-2-data"
        result = run_tool("restore", case.backup, "--config", stopped.config_path, "--data-dir", host,
                          "--run-dir", case.run_dir, "--replica", 2)
        assert result.returncode == 0 and "into order-2 in" in result.stdout, result.stderr
        assert sorted(p.name for p in host.iterdir()) == ["order-2.id", "order-2.sqlite3"]


class TestBackupFails:
    """A backup that cannot be made says so in one line and leaves nothing that looks like one."""

    def test_no_replica_database_on_this_host(self, stopped, tmp_path):
        result = run_tool("save", tmp_path / "b", "--config", stopped.config_path, "--data-dir", tmp_path / "empty")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "no order replica's database on this host" in result.stderr
        assert str(tmp_path / "empty" / "order-1.sqlite3") in result.stderr
        assert not (tmp_path / "b").exists()

    def test_a_directory_that_is_not_empty(self, stopped, tmp_path):
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "x").write_text("x")
        result = run_tool("save", tmp_path / "b", "--config", stopped.config_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"backup failed: {tmp_path / 'b'} is not empty" in result.stderr
        assert [p.name for p in (tmp_path / "b").iterdir()] == ["x"]

    def test_a_full_disk(self, stopped, tmp_path, monkeypatch):
        with small_disk(tmp_path / "disk", "64k") as disk:
            # Told by the free space before it starts...
            result = run_tool("save", disk / "b", "--config", stopped.config_path)
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
            assert "no space for the backup" in result.stderr and str(disk / "b") in result.stderr
            assert not (disk / "b").exists()
            # ... and by the disk itself when it fills up during the copy.
            monkeypatch.setattr(backup.saving, "free_bytes", lambda path: None)
            with pytest.raises(backup.BackupError, match="no space left in .* while copying order-"):
                backup.save(stopped.config, disk / "b")
            assert not (disk / "b").exists()


class TestRestoreOnAFullDisk:
    """A data directory without room for every replica's copy: refused, or undone, and nothing changed."""

    def test_a_restore_that_does_not_fit_changes_nothing(self, stopped, case, tmp_path, monkeypatch):
        size = (case.backup / backup.LOG_FILE).stat().st_size
        with small_disk(tmp_path / "disk", str(2 * size + 64 * 1024)) as data:
            (data / "notes.txt").write_text("an operator's file\n")
            before = contents(data)
            result = run_tool("restore", case.backup, "--config", stopped.config_path, "--data-dir", data,
                              "--run-dir", case.run_dir, "--force")
            assert_refused(result, f"no space in {data} for the restore")
            assert contents(data) == before
            monkeypatch.setattr(backup.restoring, "free_bytes", lambda path: None)  # so that the disk itself says it
            config = backup.configuration.load(stopped.config_path, [f'cluster.data_dir="{data}"'])
            with pytest.raises(backup.BackupError, match=f"no space left on the device of {data}") as caught:
                backup.restore(config, case.backup, force=True, run_dir=case.run_dir)
            assert not caught.value.changed
            assert contents(data) == before and not list(data.glob(".restore-*"))


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (the test skips where mounting is refused)."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
