"""How fast a replica that lost its disk copies the cluster's history back.

    .venv/bin/python -m bench.catchup [--entries 200000] [--load 2]

Starts a private cluster on free loopback ports whose logs already hold
``--entries`` trades (:func:`harness.seed.seed_history`), lets ``--load``
clients trade through it, then kills a follower, wipes its data (as
``./run.sh reset order-N`` does) and starts it again, blank. It prints how
long the wiped replica took to catch up with its leader (its
``caught_up`` event), the entries per second that makes, whether anyone
campaigned meanwhile (nobody should: the leader stays, the blank replica may
not), and the trades' latency before and during the catch-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common.protocol import CampaignEvent, CaughtUpEvent
from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import Cluster, wait_until
from harness.history import History, Load


def p50_ms(history: History, since: float, until: float) -> float | None:
    lat = [(op.completed - op.invoked) * 1000 for op in history.ops
           if op.status == "ok" and op.completed is not None and since <= op.invoked < until]
    return round(statistics.median(lat), 2) if lat else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000, help="trades in the history (default %(default)s)")
    parser.add_argument("--load", type=int, default=2, help="trading clients meanwhile (default %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="bound on the catch-up (default %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bazaar-catchup-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            t = time.monotonic()
            last = cluster.seed(args.entries)
            print(f"seeded {args.entries} trades into every database in {time.monotonic() - t:.1f} s")
            cluster.start(timeout=120)
            tap = BusTap(cluster)
            leader, epoch = tap.wait_leader(timeout=30)
            history = History()
            load = Load(history, cluster.http_ports, clients=args.load, max_ops=1_000_000,
                        max_seconds=args.max_seconds + 60, pace_s=0.01)
            load.start()
            wait_until(lambda: load.acked() >= 50, 60, "50 trades before the wipe")
            victim = next(i for i in (1, 2, 3) if i != leader)
            before_end = history.now()
            cluster.replica(victim).kill()
            cluster.wipe(f"order-{victim}")
            since = time.monotonic()
            wiped_at = history.now()
            cluster.replica(victim).start()
            event = tap.wait_event(CaughtUpEvent, f"order-{victim}", since=since, timeout=args.max_seconds)
            took = time.monotonic() - since
            caught_at = history.now()
            campaigns = tap.events(CampaignEvent, since=since)
            load.stop()
            new_leader, new_epoch = tap.leader()
            print(f"order-{victim} wiped and restarted; caught up at index {event.index} (the seeded log ends at "
                  f"{last}) in {took:.2f} s: {event.index / took:,.0f} entries/s")
            print(f"campaigns meanwhile: {len(campaigns)}; leader order-{new_leader} epoch {new_epoch} "
                  f"(was order-{leader} epoch {epoch})")
            print(f"trade p50 before the wipe {p50_ms(history, 0, before_end)} ms, during the catch-up "
                  f"{p50_ms(history, wiped_at, caught_at)} ms; {load.acked()} trades acknowledged in all")
            assert_promises_kept(cluster, history)
            print("promises kept: the history checker found no violation")
            tap.close()
        finally:
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
