"""Online backup and restore of the order log: ``python -m order.backup``.

::

    python -m order.backup save DIR --config config.toml [--replica N]
    python -m order.backup restore DIR --config config.toml [--force] [--replica N]

The command line only: it parses the arguments, loads the config, shows a
progress bar of the copy on a terminal, and prints the outcome (exit code 0),
a refusal or failure (1), a configuration error (2) or an interruption (130).
The package's docstring says what ``save`` and ``restore`` do.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import config as configuration
from common.errors import ConfigError

from .database import PROGRESS_MIN_PAGES, Progress
from .manifest import BackupError, human_bytes, orders_text
from .restoring import RUN_DIR, restore
from .saving import save


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
