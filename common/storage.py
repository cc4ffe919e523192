"""Opening a node's SQLite database safely, and what its failures mean.

Both durable stores (the order log, :mod:`order.store`, and the catalog,
:mod:`catalog.store`) open their file with :func:`open_database`, which
refuses data that cannot be trusted rather than serve from it:

* the file is missing although this node's *marker* (``<name>.id`` next to it,
  written when the database was created) says it existed: it was deleted
  while the node was down;
* SQLite cannot read it (truncated, overwritten: "not a database"), or its
  quick integrity check fails;
* it belongs to another cluster or another node (``meta`` holds the cluster
  id and the node's name, written at creation);
* it was written by an earlier Bazaar whose data this one cannot read
  (``meta`` holds the layout's version, :data:`SCHEMA_VERSION`): never
  misread, the node says what to do instead.

Each refusal is a :class:`common.errors.StorageCorrupt` whose message says
what is wrong and what to do (restore the file, or ``./run.sh reset <node>``
to start that node empty). A node with neither file nor marker starts
*blank*: new, or one that lost its whole disk; the order replica then rejoins
the cluster carefully (docs/REPLICATION.md, "Storage faults").

:func:`classify` turns SQLite's errors into the storage error tree: no space
(:class:`StorageFull`, nothing was written), a failed write or fsync
(:class:`StorageFailed`, nothing since the last good sync can be trusted),
damage (:class:`StorageCorrupt`).

:class:`Faults` lets the fault tests make a disk fail on demand where a
size-limited tmpfs cannot (an EIO on fsync): when its trigger file exists,
the next commit fails as the file says, once.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .logs import get_logger

from .errors import StorageCorrupt, StorageError, StorageFailed, StorageFull

log = get_logger(__name__)

# While a node's disk is full it tries a write again this often, once the
# file system shows at least this much free.
PROBE_EVERY_S = 0.5
PROBE_FREE_BYTES = 64 * 1024

# SQLite's primary result codes (the low byte of the extended ones).
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

# The layout of every node's database. 3: one log (the order log holds the
# genesis, every trade and every refusal, and each replica its book; the
# catalog only a projection). Databases without it (version 2, the two-store
# design, had no such row) are refused at start.
SCHEMA_VERSION = 3


def free_bytes(path: Path) -> int | None:
    """Free space on the file system that holds ``path`` (None if unknown)."""
    try:
        return shutil.disk_usage(path.parent if not path.is_dir() else path).free
    except OSError:
        return None


def describe_free(free: int | None) -> str:
    if free is None:
        return "free space unknown"
    return f"{free / 1024:.0f} KiB free" if free < 10 * 1024 * 1024 else f"{free / 2**20:.0f} MiB free"


def classify(exc: sqlite3.Error, path: Path) -> StorageError | None:
    """The storage error ``exc`` stands for, or None if it is not one (a
    constraint violation, a programming error: let it propagate)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    if primary == SQLITE_FULL or "disk is full" in text:
        free = free_bytes(path)
        return StorageFull(f"storage full: cannot write {path} ({describe_free(free)})", str(path), free)
    if primary == SQLITE_IOERR or "disk I/O error" in text:
        return StorageFailed(f"storage failed: {path}: {text}", str(path))
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return StorageCorrupt(f"{path} is damaged ({text})", str(path))
    return None


def rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it rolls back by
    itself on a full disk, and a second ROLLBACK would raise)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def write(db: sqlite3.Connection, path: Path, faults: Faults, work: Callable[[], object]) -> None:
    """Run ``work`` in one write transaction on ``db`` (``path``'s), with
    ``faults`` injected, translating storage failures.

    :raises StorageFull: nothing was written.
    :raises StorageFailed: the write or its fsync failed; it may or may not be on the disk.
    """
    fault = faults.next_fault()
    try:
        faults.before_commit(fault, path)
        db.execute("BEGIN IMMEDIATE")
        work()
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        rollback(db)
        problem = classify(exc, path)
        if problem is None:
            raise
        raise problem from None
    except BaseException:
        rollback(db)
        raise
    faults.after_commit(fault, path)


@dataclass(frozen=True)
class Opened:
    """A database opened by :func:`open_database`.

    :param blank: the database was created now: a new node, or one that lost its disk.
    """

    db: sqlite3.Connection
    blank: bool


def open_database(path: Path, node: str, cluster_id: str, schema: str, reset_hint: str,
                  created: tuple[tuple[str, object], ...] = (), synchronous: str = "FULL",
                  old_hint: str = "") -> Opened:
    """Open (or create) ``node``'s database at ``path``, refusing data that
    cannot be trusted.

    :param schema: the tables, created if missing; must include ``meta(key, value)``.
    :param reset_hint: the command that starts the node empty on purpose.
    :param created: more ``meta`` rows of a new database, written in the same
        transaction as its identity (a crash in between must not leave a new
        database that does not say it is new).
    :param synchronous: SQLite's ``synchronous`` setting: ``FULL`` where an
        acknowledgement rests on the write, ``NORMAL`` where what is lost in
        a power cut can be rebuilt (the catalog).
    :param old_hint: what to do with a database of an earlier layout.
    :raises StorageCorrupt: with a message that says what to do.
    :raises StorageFull, StorageFailed: the disk refused the work (nothing
        is wrong with the data: do not reset it, make room or mend the disk).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = path.with_name(f"{node}.id")
    existed = path.exists()
    if not existed and marker.exists():
        raise StorageCorrupt(
            f"{path} is missing, but {marker} says {node} kept its data there: it was deleted or moved while "
            f"the node was down. Restore it, or run `{reset_hint}` to start {node} empty (it then copies the "
            f"cluster's history from the others before it votes)", str(path))
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        if existed:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StorageCorrupt(f"{path} fails SQLite's integrity check ({check})", str(path))
        meta = {}
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('cluster', 'node', 'schema')"))
        if not (existed and meta and meta.get("schema") != SCHEMA_VERSION):  # an old layout is left untouched
            db.executescript(schema)
    except sqlite3.Error as exc:
        problem = classify(exc, path) or StorageCorrupt(f"{path} cannot be opened ({exc})", str(path))
        if not isinstance(problem, StorageCorrupt):
            raise problem from None  # full or failing: the data may be fine, so no advice to wipe it
        raise StorageCorrupt(f"{problem}. Restore the file from a backup, or run `{reset_hint}` to start {node} "
                             f"empty", str(path)) from None
    except StorageCorrupt as exc:
        raise StorageCorrupt(f"{exc}. Restore the file from a backup, or run `{reset_hint}` to start {node} "
                             f"empty", str(path)) from None
    if existed and not meta and not marker.exists():
        existed = False  # a creation that did not finish (its identity is written before the marker)
    if existed and meta and meta.get("schema") != SCHEMA_VERSION:
        db.close()
        version = meta.get("schema", 2)
        raise StorageCorrupt(
            f"{path} was written by an earlier Bazaar (data layout {version}; this one reads layout "
            f"{SCHEMA_VERSION}, where the order log is the one source of truth and the catalog rebuilds from "
            f"it), and cannot be read. {old_hint or 'Run the Bazaar that wrote it to use its data, or start a new cluster: stop every node, then ./run.sh reset all'}",
            str(path))
    if existed and meta:
        for key, expected in (("cluster", cluster_id), ("node", node)):
            if key in meta and meta[key] != expected:
                db.close()
                raise StorageCorrupt(
                    f"{path} holds the data of {key} {meta[key]!r}, not {expected!r}: a file from elsewhere was "
                    f"put there. Put back {node}'s own file, or run `{reset_hint}` to start it empty", str(path))
    if existed and not meta:
        db.close()
        raise StorageCorrupt(
            f"{path} holds no record of whose data it is, which every node writes when it creates its file: "
            f"it is damaged, or its write-ahead log ({path.name}-wal) was lost. Restore both, or run "
            f"`{reset_hint}` to start {node} empty", str(path))
    if not meta:
        try:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           (("cluster", cluster_id), ("node", node), ("schema", SCHEMA_VERSION), *created))
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the identity lives in the file itself from now on
        except sqlite3.Error as exc:
            rollback(db)
            db.close()
            raise classify(exc, path) or StorageFailed(f"storage failed: {path}: {exc}", str(path)) from None
    marker.write_text(f"{node} of cluster {cluster_id}: its data is {path.name}\n")
    return Opened(db, blank=not existed)


class Faults:
    """Storage failures on demand, for the fault tests (never configured in
    production). When ``trigger`` exists at a commit, it is read (``full``
    or ``eio``) and removed, and that commit fails so: ``full`` writes
    nothing; ``eio`` writes, then fails as a failed fsync would, leaving the
    data in the file system's cache but not known to be on the disk.

    :param trigger: the file to look for, or None (no faults).
    """

    def __init__(self, trigger: Path | None) -> None:
        self.trigger = trigger

    def next_fault(self) -> str | None:
        if self.trigger is None or not self.trigger.exists():
            return None
        try:
            kind = self.trigger.read_text().strip() or "eio"
            os.unlink(self.trigger)
        except OSError:
            return None
        return kind

    def before_commit(self, kind: str | None, path: Path) -> None:
        if kind == "full":
            raise StorageFull(f"storage full: cannot write {path} (injected)", str(path), 0)

    def after_commit(self, kind: str | None, path: Path) -> None:
        if kind == "eio":
            raise StorageFailed(f"storage failed: {path}: disk I/O error on fsync (injected)", str(path))


class StorageState:
    """Whether a node's disk takes writes, as its I/O loop finds out.

    :param path: the node's database file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = "ok"
        self.detail: str | None = None
        self._probe_at = 0.0

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def full(self, exc: StorageFull, now: float) -> bool:
        """A write was refused for want of space.

        :returns: True if this is news (log it, say it on the bus, step down).
        """
        self._probe_at = now + PROBE_EVERY_S
        self.detail = str(exc)
        if self.state == "full":
            return False
        self.state = "full"
        log.error("storage full: refusing writes until space comes back", file=str(self.path),
                  free=describe_free(exc.free_bytes))
        return True

    def probe_due(self, now: float) -> bool:
        """Time to try a write again (the file system shows space again)."""
        if self.state != "full" or now < self._probe_at:
            return False
        self._probe_at = now + PROBE_EVERY_S
        free = free_bytes(self.path)
        return free is None or free >= PROBE_FREE_BYTES

    def recovered(self) -> None:
        log.info("storage writable again", file=str(self.path), free=describe_free(free_bytes(self.path)))
        self.state, self.detail = "ok", None
