"""The pure parts of a backup and a restore: choosing the replica to copy,
building and checking the manifest, checking a copied log's facts and the
files against it, and the identity a restored replica takes.

They take values, not files (no I/O, no SQLite), and are unit-tested without
sockets or clusters. Reading the facts they judge is :mod:`.database`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.protocol import PROTOCOL_VERSION
from common.storage import SCHEMA_VERSION

MANIFEST = "manifest.json"
LOG_FILE = "order-log.sqlite3"
PARTIAL = ".partial"
FORMAT = "bazaar-backup"
FORMAT_VERSION = 1
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


def orders_text(n: int) -> str:
    return f"{n:,} order{'' if n == 1 else 's'}"


def human_bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 1024:,.1f} KiB"
