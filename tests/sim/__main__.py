"""``python -m tests.sim [--seed N | --seeds A:B] [--trace]``: run simulations."""

from __future__ import annotations

import argparse
import sys
import time

from .scenario import run
from .world import Violation


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", default="0:200", help="a range A:B of seeds (default %(default)s)")
    parser.add_argument("--duration", type=float, default=3.0, help="simulated seconds of faults")
    parser.add_argument("--trace", action="store_true", help="print the event trace of a failing seed")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else range(*map(int, args.seeds.split(":")))
    start, failed = time.perf_counter(), 0
    for seed in seeds:
        try:
            run(seed, duration=args.duration)
        except Violation as exc:
            failed += 1
            print(f"FAIL {exc}")
            print(f"  replay: python -m tests.sim --seed {seed} --trace")
            if args.trace:
                try:
                    run(seed, duration=args.duration, trace=True)
                except Violation as again:
                    print("\n".join(again.world.trace[-200:]))
    print(f"{len(seeds)} seeds, {failed} failed, {time.perf_counter() - start:.1f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
