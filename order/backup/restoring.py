"""``restore``: with the cluster stopped, check a backup and everything
around it before changing anything (the package's docstring lists the
checks), then give every replica the backed-up log as its own and remove the
catalog's database, which rebuilds its table from the log.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import sqlite3
from pathlib import Path

from common import config as configuration
from common.cluster import data_files
from common.errors import StorageFull
from common.storage import classify, describe_free, free_bytes

from .database import file_fact, fsync_path, inspect, os_problem
from .manifest import (
    LOG_FILE, MANIFEST, PARTIAL, BackupError, LogFacts, check_copy, check_files, check_manifest, human_bytes,
    restored_meta,
)
from .probe import running

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / "run" / "current"  # where run.sh keeps the pid files of the nodes it started


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
        raise os_problem(exc, data, "create the data directory") from None
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
            fsync_path(temp)
    except (OSError, sqlite3.Error) as exc:
        for temp, _, _ in staged:
            with contextlib.suppress(OSError):
                temp.unlink()
        if isinstance(exc, sqlite3.Error):
            problem = classify(exc, data)
            exc = OSError(errno.ENOSPC if isinstance(problem, StorageFull) else errno.EIO, str(problem or exc))
        raise os_problem(exc, data, "write the restored logs") from None
    # Everything checked and staged: from here on the data directory changes.
    try:
        for name in [r.name for r in orders] + ["catalog"]:
            for path in data_files(config, name):
                path.unlink(missing_ok=True)
        for temp, final, name in staged:
            temp.rename(final)
            final.with_name(f"{name}.id").write_text(f"{name} of cluster {config.cluster_id}: its data is "
                                                     f"{final.name}\n")
        fsync_path(data)
    except OSError as exc:
        raise BackupError(f"the restore failed while it replaced the nodes' files in {data} ({exc}), which are now "
                          f"partly restored: mend the cause, then run the restore again with --force",
                          changed=True) from None
    return manifest
