"""Failover benchmark: kill (or hang) the order leader N times under load.

    .venv/bin/python -m bench.failover --rounds 10 [--mode kill|stop|both] [--clients 4] [--no-curve]

Starts a private cluster on free loopback ports in a temporary directory
(:class:`harness.cluster.Cluster`), runs trading clients through the HTTP API, and in each round
SIGKILLs (``kill``) or SIGSTOPs (``stop``) the current leader. For each round
it prints the time from the fault to the first acknowledged trade committed
by the next leader (a transaction number beyond the old leader's log), then
restarts the victim and waits until it has caught up. At the end it settles
unknown outcomes with their Idempotency-Keys and counts lost and duplicated
trades with the history checker.

A kill closes the leader's TCP connections at once and ZeroMQ's socket monitor
reports it, so the followers elect without waiting for heartbeats; a hang
closes nothing, so only missed heartbeats (interval x liveness) tell.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common.protocol import CaughtUpEvent
from harness.bus import BusTap
from harness.checker import check, report, settle
from harness.cluster import Cluster, wait_until
from harness.history import History, Load


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_round(cluster: Cluster, tap: BusTap, history: History, mode: str, timeout: float) -> float:
    """Fault the leader once; returns seconds until trades succeed again."""
    leader, epoch = tap.wait_leader()
    target = len(history.by_status("ok")) + 20
    wait_until(lambda: len(history.by_status("ok")) >= target, 30, "steady trading before the fault")
    node = cluster.replica(leader)
    fault_at = history.now()
    if mode == "kill":
        history.note(f"SIGKILL order-{leader}")
        node.kill()
    else:
        history.note(f"SIGSTOP order-{leader}")
        node.pause()
    old_last = max((row[0] for row in cluster.trades(leader)), default=-1)

    def recovered() -> float | None:
        done = [op.completed for op in history.ops
                if op.status == "ok" and op.txn is not None and op.txn > old_last and op.completed]
        return min(done) if done else None

    first_ok = wait_until(recovered, timeout, "a trade committed by the next leader")
    since = time.monotonic()
    node.kill()  # a hung leader is killed too before it restarts
    history.note(f"restart order-{leader}")
    node.start()
    tap.wait_event(CaughtUpEvent, f"order-{leader}", since=since, timeout=30)
    return first_ok - fault_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="faults per mode (default %(default)s)")
    parser.add_argument("--mode", choices=("kill", "stop", "both"), default="both")
    parser.add_argument("--clients", type=int, default=4, help="concurrent trading clients (default %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=600, help="bound on the whole load")
    parser.add_argument("--no-curve", action="store_true", help="run the private cluster without CURVE")
    args = parser.parse_args()
    modes = ("kill", "stop") if args.mode == "both" else (args.mode,)

    with tempfile.TemporaryDirectory(prefix="bazaar-failover-") as tmp:
        cluster = Cluster(Path(tmp), settings={"security": {"curve": not args.no_curve}})
        print(f"starting a private cluster in {tmp}, CURVE {'off' if args.no_curve else 'on'} ...", flush=True)
        cluster.start()
        tap = BusTap(cluster)
        history = History()
        load = Load(history, cluster.http_ports, clients=args.clients, max_ops=10**6,
                    max_seconds=args.max_seconds)
        results: dict[str, list[float]] = {m: [] for m in modes}
        try:
            load.start()
            for mode in modes:
                for k in range(args.rounds):
                    took = one_round(cluster, tap, history, mode, timeout=30)
                    results[mode].append(took)
                    print(f"  {mode:4} round {k + 1:2}/{args.rounds}: trades succeed again after "
                          f"{took * 1000:7.1f} ms", flush=True)
            load.stop()
            print("settling unknown outcomes and checking the history ...", flush=True)
            settle(cluster, history)
            violations = check(cluster, history, verify_reads=False)
        finally:
            load.stop()
            tap.close()
            cluster.close()

    ok = len(history.by_status("ok"))
    lost = sum(1 for v in violations if v.promise == "no acknowledged trade lost")
    dups = sum(1 for v in violations if v.promise == "no duplicate")
    print()
    print(f"{'fault':<6} {'rounds':>6} {'median ms':>10} {'p99 ms':>10} {'max ms':>10}")
    for mode, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"{mode:<6} {len(ms):>6} {statistics.median(ms):>10.1f} {percentile(ms, 0.99):>10.1f} {max(ms):>10.1f}")
    print(f"trades acknowledged: {ok}; lost: {lost}; duplicated: {dups}; other violations: "
          f"{len(violations) - lost - dups}")
    if violations:
        print(report(history, violations))
        sys.exit(1)


if __name__ == "__main__":
    main()
