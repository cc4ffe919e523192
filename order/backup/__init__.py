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

The package's modules:

- :mod:`.manifest`: the pure parts (choosing the replica, building and checking
  the manifest, the restored identity) take values, not files, and are
  unit-tested without sockets or clusters;
- :mod:`.database`: the online copy, a replica's head, a copy's facts, a file's
  size and sha256;
- :mod:`.probe`: whether a node runs (reading an endpoint is pure too);
- :mod:`.saving` and :mod:`.restoring`: ``save`` and ``restore``;
- :mod:`.__main__`: the command line.

Every public name is re-exported here. A test that patches a constant or a
function where it is used patches that module (``order.backup.database.STEP_PAGES``,
``order.backup.saving.free_bytes``), not this package.
"""

from common import config as configuration

from .database import PROGRESS_MIN_PAGES, STEP_PAGES, Progress, copy_log, file_fact, inspect, read_head
from .manifest import (
    FORMAT, FORMAT_VERSION, LOG_FILE, MANIFEST, MANIFEST_KEYS, PARTIAL, BackupError, FileFact, Head, LogFacts,
    build_manifest, check_copy, check_files, check_manifest, choose_replica, human_bytes, orders_text, restored_meta,
)
from .probe import PROBE_TIMEOUT_S, bind_addresses, probe_target, running
from .restoring import ROOT, RUN_DIR, load_manifest, restore, verify
from .saving import save

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LOG_FILE", "MANIFEST", "MANIFEST_KEYS", "PARTIAL", "PROBE_TIMEOUT_S",
    "PROGRESS_MIN_PAGES", "ROOT", "RUN_DIR", "STEP_PAGES",
    "BackupError", "FileFact", "Head", "LogFacts", "Progress",
    "bind_addresses", "build_manifest", "check_copy", "check_files", "check_manifest", "choose_replica",
    "configuration", "copy_log", "file_fact", "human_bytes", "inspect", "load_manifest", "orders_text",
    "probe_target", "read_head", "restore", "restored_meta", "running", "save", "verify",
]
