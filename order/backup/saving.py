"""``save``: back up the most up-to-date local replica's log while the
cluster serves (the package's docstring says how), into ``DIR/order-log.sqlite3``
and ``DIR/manifest.json``, both written under ``.partial`` names and renamed
when complete, the manifest last.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from common import config as configuration
from common.errors import StorageFull
from common.storage import classify, describe_free, free_bytes

from .database import Progress, copy_log, count_pages, file_fact, fsync_path, inspect, os_problem, read_head
from .manifest import (
    LOG_FILE, MANIFEST, PARTIAL, BackupError, build_manifest, check_copy, choose_replica, human_bytes,
)


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
    pages, page_size = count_pages(head.path)
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
            raise os_problem(exc, dest, "create the backup directory") from None
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
            raise os_problem(exc, partial_log, f"copy {head.name}'s log") from None
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
            fsync_path(dest)
        except OSError as exc:
            raise os_problem(exc, dest, "write the backup") from None
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
