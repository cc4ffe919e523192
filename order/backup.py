"""Online backup and restore of the order log: ``python -m order.backup``.

::

    python -m order.backup save DIR --config config.toml [--replica N]
    python -m order.backup restore DIR --config config.toml [--force] [--replica N]

(``./run.sh backup DIR`` and ``./run.sh restore DIR [--force]``.) The order
log is the one source of truth, so a backup is one replica's log, and a
restore gives every replica that log back and wipes the catalog, which
rebuilds its table from it.

**save**, while the cluster serves. It picks the local replica (of config.toml's,
those whose database is on this host) whose log is the most up to date by
Raft's comparison, the last term and then the last index (that log holds every
committed entry), never a blank one; or the one ``--replica`` names. It copies
that database with SQLite's online backup API, :data:`STEP_PAGES` pages a
step, inside one read transaction held on the source for the whole copy. In
WAL mode that transaction blocks no writer (the replica appends to its
write-ahead log meanwhile) and pins one snapshot, so the copy is the database
as it was when the copy began. Without it, SQLite starts the copy over
whenever another process writes the source between two steps, which under
steady trading means it never finishes. The copy is checked (``quick_check``,
its cluster and layout, entries 1..last without a gap, transaction numbers
without a gap), turned into a plain rollback-journal file (one file, no
``-wal``), and described in ``manifest.json``. Both are written under
``.partial`` names and renamed when complete, the manifest last, so a backup
that fails or is killed never leaves anything that looks complete::

    DIR/order-log.sqlite3   the replica's database as of one instant
    DIR/manifest.json       cluster, replica, last index, term and transaction number,
                            orders, when, protocol and data-layout versions, and the
                            size and sha256 of every file

**restore**, with the cluster stopped. It checks everything before it
changes anything: the manifest, every file's size and sha256, the copy's
``quick_check``, layout and unbroken log, that the backup is of this cluster
(``[cluster] id``), that no node runs (pid files under ``run/current/`` with
live processes, and nothing listening on any node's bind address), and that
the data directory is empty (``--force`` replaces the nodes' files there).
Then every replica of config.toml (or those ``--replica`` names, one per
host on several hosts) gets the log as its own (its node name; hard state:
the backup's last term, no vote; not blank; the book and its ``applied`` as
copied), and the catalog's database goes. A refusal says what
to do and changes nothing.

The pure parts (choosing the replica, building and checking the manifest,
the restored identity, reading an endpoint) take values, not files, and are
unit-tested without sockets or clusters.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common import config as configuration
from common.cluster import data_files
from common.errors import ConfigError, StorageFull
from common.protocol import PROTOCOL_VERSION
from common.storage import SCHEMA_VERSION, classify, describe_free, free_bytes

MANIFEST = "manifest.json"
LOG_FILE = "order-log.sqlite3"
PARTIAL = ".partial"
FORMAT = "bazaar-backup"
FORMAT_VERSION = 1
# Pages copied per step of the online backup (4 MiB of 4 KiB pages): progress shows per step.
STEP_PAGES = 1024
# A log of at least this many pages gets a progress bar (on a terminal).
PROGRESS_MIN_PAGES = 2 * STEP_PAGES
# How long a probe of a node's address waits for a connection.
PROBE_TIMEOUT_S = 0.5
ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / "run" / "current"  # where run.sh keeps the pid files of the nodes it started
MANIFEST_KEYS = ("format", "format_version", "cluster", "replica", "last_index", "last_term", "last_txn",
                 "orders", "trades", "created", "protocol_version", "schema_version", "files")


class BackupError(Exception):
    """A backup or restore that cannot go on; the message names what failed, where, and what to do.

    :param changed: the data directory was changed before the failure (a restore cut short).
    """

    def __init__(self, message: str, changed: bool = False) -> None:
        super().__init__(message)
        self.changed = changed


@dataclass(frozen=True)
class Head:
    """A local replica's database, as the choice of what to copy sees it.

    :param problem: why it cannot be copied (unreadable, another cluster's), or None.
    """

    name: str
    path: Path
    last_index: int = 0
    last_term: int = 0
    blank: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class LogFacts:
    """What a copied log holds, read from its own tables.

    :param integrity: ``PRAGMA quick_check``'s first line (``ok`` when sound).
    :param entries: how many log entries; ``first_index`` the lowest.
    :param orders: trade entries, carried out or refused; ``trades`` those carried out
        (``txns`` of them have a transaction number, the highest ``last_txn``).
    """

    integrity: str
    cluster: object
    node: object
    schema: object
    last_index: int
    last_term: int
    first_index: int
    entries: int
    last_txn: int
    txns: int
    orders: int
    trades: int


@dataclass(frozen=True)
class FileFact:
    size: int
    sha256: str


# --- the pure parts -----------------------------------------------------------------


def choose_replica(heads: list[Head], wanted: str | None = None) -> Head:
    """The replica to copy: ``wanted``, or the most up-to-date of ``heads``.

    :raises BackupError: naming every database looked at and why none will do.
    """
    if wanted is not None:
        head = next((h for h in heads if h.name == wanted), None)
        if head is None:
            raise BackupError(f"{wanted} is not an order replica of the config (replicas: "
                              f"{', '.join(h.name for h in heads)})")
        if head.problem or head.blank or head.last_index == 0:
            why = head.problem or ("it is blank: it has not caught up with a leader since it lost its data"
                                   if head.blank else "its log is empty")
            raise BackupError(f"cannot back up {wanted} from {head.path}: {why}")
        return head
    usable = [h for h in heads if h.problem is None and not h.blank and h.last_index > 0]
    if not usable:
        seen = "; ".join(f"{h.path}: {h.problem or ('blank' if h.blank else 'empty log')}" for h in heads
                         if h.problem != "missing")
        looked = ", ".join(str(h.path) for h in heads)
        raise BackupError("no order replica's database on this host to back up" +
                          (f" ({seen})" if seen else f": looked for {looked} ([cluster] data_dir)") +
                          ". Run the backup on a host of an order replica, with its config.toml")
    return max(usable, key=lambda h: (h.last_term, h.last_index))


def build_manifest(facts: LogFacts, replica: str, files: dict[str, FileFact], created: datetime) -> dict:
    """The manifest of a backup of ``replica``'s log (``created``: when the copy's snapshot was taken)."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "cluster": facts.cluster, "replica": replica,
        "last_index": facts.last_index, "last_term": facts.last_term, "last_txn": facts.last_txn,
        "orders": facts.orders, "trades": facts.trades,
        "created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "protocol_version": PROTOCOL_VERSION, "schema_version": SCHEMA_VERSION,
        "files": {name: {"size": f.size, "sha256": f.sha256} for name, f in sorted(files.items())},
    }


def check_manifest(manifest: object, cluster_id: str) -> list[str]:
    """What is wrong with a manifest for a restore into cluster ``cluster_id`` (empty: nothing)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return [f"{MANIFEST} is not a Bazaar backup's manifest"]
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        return [f"{MANIFEST} lacks {', '.join(missing)}"]
    problems = []
    if manifest["format_version"] != FORMAT_VERSION:
        problems.append(f"the backup's format is version {manifest['format_version']!r}; this Bazaar reads "
                        f"{FORMAT_VERSION}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        problems.append(f"the backup holds data layout {manifest['schema_version']!r}; this Bazaar reads layout "
                        f"{SCHEMA_VERSION}: restore it with the Bazaar that made it")
    if manifest["cluster"] != cluster_id:
        problems.append(f"the backup is of cluster {manifest['cluster']!r}, and the config is of cluster "
                        f"{cluster_id!r}: restoring it would give this cluster another one's history. Use a "
                        f"backup of {cluster_id!r}, or the config of {manifest['cluster']!r}")
    files = manifest["files"]
    if not isinstance(files, dict) or LOG_FILE not in files:
        problems.append(f"{MANIFEST} does not list {LOG_FILE}")
    elif any(not isinstance(n, str) or Path(n).name != n or n in (".", "..") for n in files):
        problems.append(f"{MANIFEST} names a file outside the backup's directory")
    elif not all(isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)
                 for f in files.values()):
        problems.append(f"{MANIFEST} lists a file without its size and sha256")
    return problems


def check_files(manifest: dict, found: dict[str, FileFact | None]) -> list[str]:
    """Every file the manifest lists against what is there (None: missing)."""
    problems = []
    for name, want in manifest["files"].items():
        got = found.get(name)
        if got is None:
            problems.append(f"{name} is missing")
        elif got.size != want["size"]:
            problems.append(f"{name} is {got.size:,} bytes, the manifest says {want['size']:,} "
                            f"({'truncated' if got.size < want['size'] else 'grown'} since the backup)")
        elif got.sha256 != want["sha256"]:
            problems.append(f"{name} does not match its checksum (sha256 {got.sha256[:16]}..., the manifest "
                            f"says {want['sha256'][:16]}...): a byte of it changed since the backup")
    return problems


def check_copy(facts: LogFacts, manifest: dict | None = None) -> list[str]:
    """What is wrong with a copied log (and, given its manifest, where they disagree)."""
    problems = []
    if facts.integrity != "ok":
        problems.append(f"it fails SQLite's integrity check ({facts.integrity})")
    if facts.schema != SCHEMA_VERSION:
        problems.append(f"its data layout is {facts.schema!r}, not {SCHEMA_VERSION}")
    if facts.entries == 0:
        problems.append("its log is empty")
    elif facts.first_index != 1 or facts.entries != facts.last_index:
        problems.append(f"its log has a gap: {facts.entries:,} entries between {facts.first_index} and "
                        f"{facts.last_index}")
    if facts.txns != facts.last_txn:
        problems.append(f"its transaction numbers have a gap: {facts.txns:,} of them up to {facts.last_txn:,}")
    if manifest is not None:
        for key in ("cluster", "last_index", "last_term", "last_txn", "orders", "trades"):
            if getattr(facts, key) != manifest[key]:
                problems.append(f"it holds {key} {getattr(facts, key)!r}, the manifest says {manifest[key]!r}")
    return problems


def restored_meta(node: str, last_term: int) -> tuple[tuple[str, object], ...]:
    """The ``meta`` rows that make a copied log replica ``node``'s own: its
    name, Raft's hard state (the log's last term, no vote: a candidate of the
    restored cluster starts a term after every entry's), not blank (it holds
    the whole history). The cluster, the layout, the book and its ``applied``
    stay as copied."""
    return (("node", node), ("term", last_term), ("voted_for", None), ("blank", 0))


def probe_target(endpoint: str) -> tuple[int, object] | None:
    """Where to dial to find out whether anything listens at a bind address:
    ``(address family, address)``, None for what cannot be dialled (inproc)."""
    if endpoint.startswith("ipc://"):
        return socket.AF_UNIX, endpoint[len("ipc://"):]
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]")
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


def bind_addresses(config: configuration.Config) -> list[tuple[str, str]]:
    """``(node, endpoint)`` for every address a node of ``config`` listens on."""
    out = [("broker", config.broker.xsub.bind), ("broker", config.broker.xpub.bind),
           ("catalog", config.catalog.endpoint.bind)]
    out += [(r.name, r.endpoint.bind) for r in config.orders]
    host = config.frontend.host if ":" not in config.frontend.host else f"[{config.frontend.host}]"
    out.append(("frontend", f"tcp://{host}:{config.frontend.port}"))
    return out


def orders_text(n: int) -> str:
    return f"{n:,} order{'' if n == 1 else 's'}"


def human_bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 1024:,.1f} KiB"


# --- files and databases --------------------------------------------------------------


def file_fact(path: Path) -> FileFact:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileFact(size, digest.hexdigest())


def _fsync(path: Path) -> None:
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
    _fsync(target)
    return taken


def _pages(path: Path) -> tuple[int, int]:
    """``path``'s database as a copy would be: its pages (the file's and its WAL's) and their size."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    try:
        return db.execute("PRAGMA page_count").fetchone()[0], db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()


def _os_problem(exc: OSError, path: Path, what: str) -> BackupError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackupError(f"no space left on the device of {path} ({describe_free(free_bytes(path))}) while "
                           f"{what}: free some space or choose another directory")
    return BackupError(f"cannot {what}: {path}: {exc.strerror or exc}")


# --- save -------------------------------------------------------------------------


def save(config: configuration.Config, dest: Path, replica: int | None = None,
         progress: Callable[[int], Progress | None] | None = None) -> dict:
    """Back up the most up-to-date local replica (or ``replica``) into the new
    or empty directory ``dest``.

    :param progress: given the pages to copy, returns a callback for the copy's progress (or None).
    :returns: the manifest written.
    :raises BackupError: nothing that looks like a backup was left in ``dest``.
    """
    dest = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest} is a file: give a new or empty directory for the backup")
    if dest.is_dir() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: give a new or empty directory (a backup never overwrites "
                          f"another)")
    heads = [read_head(r.name, config.data_dir / f"{r.name}.sqlite3", config.cluster_id) for r in config.orders]
    head = choose_replica(heads, None if replica is None else config.replica(replica).name)
    pages, page_size = _pages(head.path)
    size = pages * page_size
    free = free_bytes(dest if dest.exists() else dest.parent)
    if free is not None and free < size:
        raise BackupError(f"no space for the backup in {dest}: {head.name}'s log is {human_bytes(size)} and the "
                          f"device has {describe_free(free)}: free some space or choose another directory")
    created = not dest.exists()
    partial_log, partial_manifest = dest / (LOG_FILE + PARTIAL), dest / (MANIFEST + PARTIAL)
    try:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_problem(exc, dest, "create the backup directory") from None
        callback = None if progress is None else progress(pages)
        try:
            taken = copy_log(head.path, partial_log, callback)
        except sqlite3.Error as exc:
            problem = classify(exc, partial_log)
            if isinstance(problem, StorageFull):
                raise BackupError(f"no space left in {dest} while copying {head.name}'s log ({head.path}, "
                                  f"{human_bytes(size)}; {describe_free(free_bytes(dest))}): free some space or "
                                  f"choose another directory") from None
            raise BackupError(f"copying {head.name}'s log {head.path} to {dest} failed: {problem or exc}") from None
        except OSError as exc:
            raise _os_problem(exc, partial_log, f"copy {head.name}'s log") from None
        finally:
            getattr(callback, "close", lambda: None)()
        facts = inspect(partial_log)
        problems = check_copy(facts)
        if facts.cluster != config.cluster_id:
            problems.append(f"it is cluster {facts.cluster!r}'s, not {config.cluster_id!r}")
        if problems:
            raise BackupError(f"the copy of {head.name}'s log ({head.path}) is not sound: {'; '.join(problems)}. "
                              f"Nothing was saved; try again, or another replica with --replica")
        try:
            partial_log.rename(dest / LOG_FILE)
            manifest = build_manifest(facts, head.name, {LOG_FILE: file_fact(dest / LOG_FILE)}, taken)
            with partial_manifest.open("w") as fh:
                json.dump(manifest, fh, indent=2)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            partial_manifest.rename(dest / MANIFEST)  # from here on it is a backup
            _fsync(dest)
        except OSError as exc:
            raise _os_problem(exc, dest, "write the backup") from None
        return manifest
    except BaseException:
        for path in (partial_log, partial_manifest, dest / LOG_FILE, dest / (LOG_FILE + PARTIAL + "-journal")):
            if not (dest / MANIFEST).exists():
                with contextlib.suppress(OSError):
                    path.unlink()
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise


# --- restore ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _listening(endpoint: str) -> bool:
    target = probe_target(endpoint)
    if target is None:
        return False
    family, address = target
    if family == socket.AF_UNIX and not os.path.exists(address):
        return False
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(PROBE_TIMEOUT_S)
        try:
            s.connect(address)
        except OSError:
            return False
    return True


def running(config: configuration.Config, run_dir: Path | None) -> list[str]:
    """Every sign that a node of the cluster runs: a live pid in a pid file
    of ``run_dir``, or anything listening on a node's bind address."""
    signs = []
    if run_dir is not None and run_dir.is_dir():
        for pid_file in sorted(run_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _alive(pid):
                    signs.append(f"{pid_file.stem} runs (pid {pid}, {pid_file})")
    for node, endpoint in bind_addresses(config):
        if _listening(endpoint):
            signs.append(f"something listens on {endpoint} ({node}'s address)")
    return signs


def load_manifest(source: Path) -> object:
    path = source / MANIFEST
    if not source.is_dir():
        raise BackupError(f"{source} is not a directory: give the directory `backup` wrote")
    if not path.is_file():
        partial = " (a backup that did not finish)" if (source / (MANIFEST + PARTIAL)).exists() or \
            (source / (LOG_FILE + PARTIAL)).exists() else ""
        raise BackupError(f"{source} holds no {MANIFEST}: it is not a complete backup{partial}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read ({exc}): the backup is damaged") from None


def verify(config: configuration.Config, source: Path) -> tuple[dict, LogFacts]:
    """Check a backup for a restore into ``config``'s cluster (reads only).

    :raises BackupError: what is wrong with it.
    """
    manifest = load_manifest(source)
    problems = check_manifest(manifest, config.cluster_id)
    if not problems:
        found = {name: file_fact(source / name) if (source / name).is_file() else None
                 for name in manifest["files"]}
        problems = check_files(manifest, found)
    if problems:
        raise BackupError(f"the backup in {source} cannot be restored: {'; '.join(problems)}")
    try:
        facts = inspect(source / LOG_FILE)
    except sqlite3.Error as exc:
        raise BackupError(f"the backup in {source} is damaged: {LOG_FILE} cannot be read ({exc})") from None
    problems = check_copy(facts, manifest)
    if problems:
        raise BackupError(f"the backup in {source} is damaged: {LOG_FILE}: {'; '.join(problems)}")
    return manifest, facts


def restore(config: configuration.Config, source: Path, force: bool = False,
            run_dir: Path | None = RUN_DIR, replicas: list[int] | None = None) -> dict:
    """Give every replica of ``config`` the backed-up log and wipe the
    catalog's table, after every check has passed.

    :param run_dir: where run.sh keeps pid files (None: look only at the addresses).
    :param replicas: only these replicas' ids (on several hosts, the one whose host this is).
    :returns: the backup's manifest.
    :raises BackupError: refused or failed, with the data directory as it was.
    """
    source = source.resolve()
    orders = [config.replica(i) for i in replicas] if replicas else list(config.orders)
    manifest, facts = verify(config, source)
    signs = running(config, run_dir)
    if signs:
        raise BackupError(f"the cluster is running: {'; '.join(signs)}. Stop every node first (./run.sh stop), "
                          f"then restore")
    data = config.data_dir
    present = sorted(p.name for p in data.iterdir()) if data.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
        raise BackupError(f"{data} is not empty (it holds {shown}): a restore replaces every node's data there, "
                          f"and what it holds since the backup would be lost. Move it aside (keep it until the "
                          f"restored cluster runs), or pass --force to replace it")
    if data.exists() and not data.is_dir():
        raise BackupError(f"{data} ([cluster] data_dir) is a file, not a directory")
    size = manifest["files"][LOG_FILE]["size"]
    need = size * len(orders)
    free = free_bytes(data)
    if free is not None and free < need:
        raise BackupError(f"no space in {data} for the restore: {len(orders)} copies of the log need "
                          f"{human_bytes(need)} (besides what is there now), the device has {describe_free(free)}")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_problem(exc, data, "create the data directory") from None
    staged: list[tuple[Path, Path, str]] = []
    try:
        for r in orders:
            temp = data / f".restore-{r.name}.sqlite3"
            staged.append((temp, data / f"{r.name}.sqlite3", r.name))
            shutil.copyfile(source / LOG_FILE, temp)
            db = sqlite3.connect(temp, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                               restored_meta(r.name, facts.last_term))
                db.execute("COMMIT")
            finally:
                db.close()
            _fsync(temp)
    except (OSError, sqlite3.Error) as exc:
        for temp, _, _ in staged:
            with contextlib.suppress(OSError):
                temp.unlink()
        if isinstance(exc, sqlite3.Error):
            problem = classify(exc, data)
            exc = OSError(errno.ENOSPC if isinstance(problem, StorageFull) else errno.EIO, str(problem or exc))
        raise _os_problem(exc, data, "write the restored logs") from None
    # Everything checked and staged: from here on the data directory changes.
    try:
        for name in [r.name for r in orders] + ["catalog"]:
            for path in data_files(config, name):
                path.unlink(missing_ok=True)
        for temp, final, name in staged:
            temp.rename(final)
            final.with_name(f"{name}.id").write_text(f"{name} of cluster {config.cluster_id}: its data is "
                                                     f"{final.name}\n")
        _fsync(data)
    except OSError as exc:
        raise BackupError(f"the restore failed while it replaced the nodes' files in {data} ({exc}), which are now "
                          f"partly restored: mend the cause, then run the restore again with --force",
                          changed=True) from None
    return manifest


# --- the command line -----------------------------------------------------------------


def _progress_bar(stream) -> Callable[[int], Progress | None]:
    """A rich progress bar of pages copied, on a terminal and for a large log only."""
    def make(pages: int) -> Progress | None:
        from rich.console import Console

        console = Console(file=stream)
        if not console.is_terminal or pages < PROGRESS_MIN_PAGES:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        bar = Bar(TextColumn("copying the log"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
                  TimeElapsedColumn(), console=console, transient=True)
        task = bar.add_task("copy", total=pages)
        bar.start()

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        update.close = bar.stop  # type: ignore[attr-defined]
        return update

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m order.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    save_cmd = commands.add_parser("save", help="back up the order log while the cluster runs")
    save_cmd.add_argument("dir", type=Path, help="a new or empty directory")
    save_cmd.add_argument("--replica", type=int, metavar="N",
                          help="copy replica N's log (default: the most up-to-date replica on this host)")
    restore_cmd = commands.add_parser("restore", help="give every replica the backed-up log (cluster stopped)")
    restore_cmd.add_argument("dir", type=Path, help="the directory `save` wrote")
    restore_cmd.add_argument("--force", action="store_true",
                             help="replace the nodes' files in a data directory that is not empty")
    restore_cmd.add_argument("--replica", type=int, action="append", metavar="N",
                             help="restore only replica N (repeatable; default: every replica of the config): on "
                                  "several hosts, each replica's host restores its own")
    restore_cmd.add_argument("--run-dir", type=Path, default=RUN_DIR,
                             help="where run.sh keeps the nodes' pid files (default: %(default)s)")
    for sub in (save_cmd, restore_cmd):
        configuration.add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        config = configuration.from_args(args)
        started = time.monotonic()
        if args.command == "save":
            manifest = save(config, args.dir, args.replica, _progress_bar(sys.stderr))
            size = sum(f["size"] for f in manifest["files"].values())
            print(f"saved {orders_text(manifest['orders'])} (last transaction {manifest['last_txn']:,}, log index "
                  f"{manifest['last_index']:,}, term {manifest['last_term']}) of cluster {manifest['cluster']} from "
                  f"{manifest['replica']}: {human_bytes(size)} in {time.monotonic() - started:.1f} s to "
                  f"{args.dir.resolve()}")
        else:
            manifest = restore(config, args.dir, args.force, args.run_dir, args.replica)
            names = [config.replica(i).name for i in args.replica] if args.replica else \
                [r.name for r in config.orders]
            print(f"restored {orders_text(manifest['orders'])} (last transaction {manifest['last_txn']:,}, log index "
                  f"{manifest['last_index']:,}) backed up from {manifest['replica']} at {manifest['created']} "
                  f"into {', '.join(names)} in {config.data_dir}; the catalog rebuilds "
                  f"its table from the log when it starts. Start the cluster: ./run.sh")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        verb = ("backup failed" if args.command == "save" else
                "restore failed" if exc.changed else "restore refused (nothing was changed)")
        print(f"{verb}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was " + ("saved" if args.command == "save" else "changed"), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
