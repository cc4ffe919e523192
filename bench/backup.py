"""What an online backup costs the trades that run meanwhile.

    .venv/bin/python -m bench.backup [--orders 1000000] [--rounds 2] [--round-seconds 6]

Starts a private cluster on free loopback ports whose logs already hold
``--orders`` trades (:func:`harness.seed.seed_history`), lets ``--clients``
clients trade through the HTTP API the whole time, and alternates rounds
without a backup and rounds with one: ``python -m order.backup save``, as an
operator runs it, back to back into fresh directories until the round has
lasted ``--round-seconds`` (at least one whole backup per round). It prints
each round's trade latency, the backup's time and size, and the ratios of
p50 and p99 with a backup running to without. Every round and every backup
is bounded in time; the load in trades too.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cluster import Cluster
from harness.history import History, Load
from harness.process import ROOT, wait_until
from order import backup


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latencies_ms(history: History, since: float, until: float) -> list[float]:
    return [(op.completed - op.invoked) * 1000 for op in list(history.ops)
            if op.status == "ok" and op.completed is not None and since <= op.invoked and op.completed <= until]


def describe(lat: list[float]) -> str:
    if not lat:
        return "no trades"
    return f"{len(lat):5d} trades, p50 {percentile(lat, 0.5):6.2f} ms, p99 {percentile(lat, 0.99):7.2f} ms"


def run_backup(cluster: Cluster, dest: Path, timeout_s: float) -> tuple[float, str]:
    """One backup as ``./run.sh backup`` runs it. :returns: its wall time and its summary line."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "order.backup", "save", str(dest), "--config",
                           str(cluster.config_path)], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"the backup failed: {done.stderr.strip()}")
    return took, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="trades in the seeded log (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds with and without a backup, each (default %(default)s)")
    parser.add_argument("--round-seconds", type=float, default=6.0, help="length of a round (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="trading clients (default %(default)s)")
    parser.add_argument("--pace-ms", type=float, default=5.0,
                        help="each client's pause between trades (default %(default)s)")
    parser.add_argument("--backup-timeout", type=float, default=600.0,
                        help="bound on one backup, s (default %(default)s)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (rounds alternate, and one of each says little)")
    with tempfile.TemporaryDirectory(prefix="bazaar-backup-bench-") as tmp:
        cluster = Cluster(Path(tmp) / "cluster")
        try:
            t = time.monotonic()
            cluster.seed(args.orders)
            log_bytes = (cluster.workdir / "data" / "order-1.sqlite3").stat().st_size
            print(f"seeded {args.orders:,} trades into every database in {time.monotonic() - t:.1f} s "
                  f"(each replica's file {backup.human_bytes(log_bytes)})")
            t = time.monotonic()
            cluster.start(timeout=600)
            cluster.wait_lookups(timeout=120)
            print(f"cluster up in {time.monotonic() - t:.1f} s; {args.clients} clients trade, a pause of "
                  f"{args.pace_ms:g} ms each between trades")
            history = History()
            budget = args.rounds * 2 * (args.round_seconds + args.backup_timeout) + 60
            load = Load(history, cluster.http_addresses, clients=args.clients, max_ops=10_000_000,
                        max_seconds=budget, pace_s=args.pace_ms / 1000)
            without: list[float] = []
            with_backup: list[float] = []
            took: list[float] = []
            copied: list[float] = []  # the tool's own time, from its summary line (after its imports)
            size = 0
            summary = ""
            n = 0
            with load:
                wait_until(lambda: load.acked() >= 20, 60, "the first trades")
                for round_no in range(1, args.rounds + 1):
                    for running in (False, True):
                        since = history.now()
                        if running:
                            backups = 0
                            while backups == 0 or history.now() - since < args.round_seconds:
                                n += 1
                                dest = Path(tmp) / f"backup-{n}"
                                seconds, summary = run_backup(cluster, dest, args.backup_timeout)
                                took.append(seconds)
                                copied.append(float(re.search(r" in ([0-9.]+) s to ", summary).group(1)))
                                backups += 1
                                if n == 1:
                                    backup.verify(cluster.config, dest)
                                size = sum(f.stat().st_size for f in dest.iterdir())
                                shutil.rmtree(dest)
                        else:
                            time.sleep(args.round_seconds)  # a round of the same length, no backup
                        until = history.now()
                        lat = latencies_ms(history, since, until)
                        (with_backup if running else without).extend(lat)
                        label = (f"with {backups} backup{'s' if backups > 1 else ''}" if running else
                                 "without a backup")
                        print(f"round {round_no} {label:<20} {until - since:5.1f} s: {describe(lat)}")
            unknown = len(history.by_status("unknown"))
            print(f"last backup: {summary}")
            print(f"backup: {backup.human_bytes(size)} in {statistics.median(copied):.2f} s median by its own "
                  f"count (min {min(copied):.2f}, max {max(copied):.2f}), {statistics.median(took):.2f} s median "
                  f"for the whole `python -m order.backup save` process, over {len(took)} backups")
            print(f"trades without a backup: {describe(without)}")
            print(f"trades with a backup:    {describe(with_backup)}")
            if without and with_backup:
                p50 = percentile(with_backup, 0.5) / percentile(without, 0.5)
                p99 = percentile(with_backup, 0.99) / percentile(without, 0.99)
                print(f"ratio with/without a backup: p50 {p50:.2f}x, p99 {p99:.2f}x; trades of unknown outcome: "
                      f"{unknown}")
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
