"""The files and databases that a backup and a restore read: a live
replica's head and page count (read only, never written), its online copy,
a copy's facts (opened ``immutable``), a file's size and sha256, an fsync,
and what an ``OSError`` tells the operator.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from common.storage import describe_free, free_bytes

from .manifest import BackupError, FileFact, Head, LogFacts

# Pages copied per step of the online backup (4 MiB of 4 KiB pages): progress shows per step.
STEP_PAGES = 1024
# A log of at least this many pages gets a progress bar (on a terminal).
PROGRESS_MIN_PAGES = 2 * STEP_PAGES


def file_fact(path: Path) -> FileFact:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileFact(size, digest.hexdigest())


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _meta(db: sqlite3.Connection) -> dict:
    return dict(db.execute("SELECT key, value FROM meta"))


def read_head(name: str, path: Path, cluster_id: str) -> Head:
    """A live replica's last index and term (never writes to it)."""
    if not path.exists():
        return Head(name, path, problem="missing")
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
        try:
            db.execute("PRAGMA query_only=1")
            meta = _meta(db)
            row = db.execute("SELECT idx, term FROM log ORDER BY idx DESC LIMIT 1").fetchone() or (0, 0)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Head(name, path, problem=f"cannot be read ({exc})")
    if meta.get("cluster") != cluster_id:
        return Head(name, path, problem=f"it holds cluster {meta.get('cluster')!r}'s data, not {cluster_id!r}")
    return Head(name, path, row[0], row[1], blank=meta.get("blank") == 1)


def inspect(path: Path) -> LogFacts:
    """Check and describe a copied log, opened so that nothing is written
    next to it or into it (``immutable``: no ``-wal``, no ``-shm``, no lock).

    :raises sqlite3.Error: it is not a database at all.
    """
    db = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)
    try:
        integrity = db.execute("PRAGMA quick_check").fetchone()[0]
        meta = _meta(db)
        entries, first, last = db.execute("SELECT COUNT(*), COALESCE(MIN(idx), 0), COALESCE(MAX(idx), 0) "
                                          "FROM log").fetchone()
        term = db.execute("SELECT term FROM log WHERE idx = ?", (last,)).fetchone()
        txns, last_txn, orders = db.execute("SELECT COUNT(txn), COALESCE(MAX(txn), 0), COUNT(request_id) "
                                            "FROM log").fetchone()
        trades = db.execute("SELECT COUNT(*) FROM log WHERE status = 'ok'").fetchone()[0]
    finally:
        db.close()
    return LogFacts(integrity, meta.get("cluster"), meta.get("node"), meta.get("schema"), last,
                    term[0] if term else 0, first, entries, last_txn, txns, orders, trades)


Progress = Callable[[int, int], None]  # (pages copied, pages in all)


def copy_log(source: Path, target: Path, progress: Progress | None = None) -> datetime:
    """Copy the live database ``source`` into the new file ``target``,
    consistently, however much the replica writes meanwhile (the read
    transaction held across every step pins the snapshot), and fsync it.

    :returns: when the snapshot was taken.
    :raises sqlite3.Error: SQLite's own (a full disk among them).
    """
    src = sqlite3.connect(f"{source.as_uri()}?mode=rw", uri=True, timeout=10, isolation_level=None)
    try:
        src.execute("PRAGMA query_only=1")
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM meta").fetchone()  # the snapshot starts at this first read
        taken = datetime.now(UTC)
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            dst.execute("PRAGMA synchronous=OFF")  # one fsync at the end instead
            step = None if progress is None else (lambda status, remaining, total:
                                                  progress(total - remaining, total))
            src.backup(dst, pages=STEP_PAGES, progress=step)
            dst.execute("PRAGMA journal_mode=DELETE")  # the source's WAL flag came along: one plain file
        finally:
            dst.close()
        src.execute("COMMIT")
    finally:
        src.close()
    fsync_path(target)
    return taken


def count_pages(path: Path) -> tuple[int, int]:
    """``path``'s database as a copy would be: its pages (the file's and its WAL's) and their size."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    try:
        return db.execute("PRAGMA page_count").fetchone()[0], db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()


def os_problem(exc: OSError, path: Path, what: str) -> BackupError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupError(f"no space left on the device of {path} ({describe_free(free_bytes(path))}) while "
                           f"{what}: free some space or choose another directory")
    return BackupError(f"cannot {what}: {path}: {exc.strerror or exc}")
