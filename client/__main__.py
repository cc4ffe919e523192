"""``python -m client session|bench``: the seed's client session and the HTTP benchmark.

    python -m client session [--config config.toml] [-p 0.6] [-n 1000] [--seed N]
    python -m client bench [--spawn] [--clients 5] [--p 0 0.2 0.4 0.6 0.8] [-n 1000]
    python -m client bench --spawn --open-loop-only --rate 100:1600:x2 [--arrival poisson] [--p99-bound-ms 50]

See :mod:`client.session` and :mod:`client.bench`; ``--help`` on each
subcommand lists every option.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
from pathlib import Path

from rich.console import Console

from common import config as configuration
from common import logs
from common.node import run_main

from . import bench, openloop, session
from .http import CLIENT_NAME, HttpClient
from .report import session_summary
from .stats import summarize_all

ROOT = Path(__file__).resolve().parents[1]
# Exit status of a session whose frontend never answered.
EXIT_UNREACHABLE = 3


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"p must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _config_path(text: str | None) -> Path:
    """``--config``, defaulting to ./config.toml, else the checkout's."""
    if text:
        return Path(text)
    here = Path("config.toml")
    return here if here.exists() else ROOT / "config.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description="Bazaar's HTTP client.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("session", help="the seed's session: lookups, trades with probability p, verification",
                       description="Look up random stocks, trade with probability p after each successful lookup, "
                                   "then read back every acknowledged trade. Exit status 0 when every one matches, "
                                   f"1 on any mismatch or trade of unknown outcome, {EXIT_UNREACHABLE} when the "
                                   "frontend never answered.")
    s.add_argument("--config", help="config.toml: the frontend's [frontend] host and port (default ./config.toml)")
    s.add_argument("--host", help="the frontend's address (default: from the config)")
    s.add_argument("--port", type=int, help="the frontend's port (default: from the config)")
    s.add_argument("-p", "--p", type=_probability, default=0.6, help="trade probability (default %(default)s)")
    s.add_argument("-n", "--iterations", type=_positive_int, default=1000, help="lookups (default %(default)s)")
    s.add_argument("--seed", type=int, help="seed of the random choices (default: random, printed)")
    s.add_argument("--max-seconds", type=_positive_float, default=300.0,
                   help="wall-time cap of the loop, and again of the verification (default %(default)s)")
    s.add_argument("--stocks", help="comma-separated names (default: the catalog's CSV of the config)")

    b = sub.add_parser("bench", help="the HTTP benchmark: concurrent sessions, a sweep of p, cache on and off",
                       description="Concurrent sessions against Bazaar's own frontends (cache on and off) over a "
                                   "sweep of p, with baselines (a bare Flask route on the same server, a bare "
                                   "ZeroMQ round trip); see client/bench.py and docs/PERFORMANCE.md.")
    b.add_argument("--config", help="config.toml of the running backends (default ./config.toml)")
    b.add_argument("--spawn", action="store_true", help="start a private cluster on free ports instead")
    b.add_argument("--no-curve", action="store_true",
                   help="with --spawn: the private cluster runs without CURVE (to measure what it costs; "
                        "without --spawn, [security] curve in the config decides)")
    b.add_argument("--clients", type=_positive_int, default=5, help="concurrent client processes (default %(default)s)")
    b.add_argument("--p", type=_probability, nargs="+", default=list(bench.DEFAULT_P_VALUES),
                   help="the trade probabilities of the sweep (default: %(default)s)")
    b.add_argument("-n", "--iterations", type=_positive_int, default=1000,
                   help="lookups per client and phase (default %(default)s)")
    b.add_argument("--max-seconds", type=_positive_float, default=60.0,
                   help="wall-time cap of each client's loop, and again of its verification (default %(default)s)")
    b.add_argument("--baseline-rounds", type=int, default=3, choices=range(0, 21), metavar="N",
                   help="rounds of bare route / cached / uncached / bare ZeroMQ (default %(default)s)")
    b.add_argument("--cache-size", type=_positive_int,
                   help="capacity of the caching frontend (default: one entry per stock)")
    b.add_argument("--seed", type=int, default=0, help="seed of the clients' random choices (default %(default)s)")
    b.add_argument("--out", type=Path, help="output directory (default bench/results/<timestamp>/)")
    b.add_argument("--stocks", help="comma-separated names (default: the catalog's CSV of the config)")
    o = b.add_argument_group("open loop", "requests sent at a fixed arrival rate, latency counted from when each "
                                          "was due (see client/openloop.py)")
    o.add_argument("--rate", nargs="+", metavar="RATE",
                   help="offered rates, requests/s: 400, a doubling range 100:1600:x2, a linear one "
                        "100:500:+100, or several; each rate runs the bare route, cached lookups and trades, "
                        "-n requests each (default: no open loop)")
    o.add_argument("--arrival", choices=openloop.ARRIVALS, default="poisson",
                   help="arrival times: a Poisson process or evenly spaced, drawn from --seed (default %(default)s)")
    o.add_argument("--p99-bound-ms", type=_positive_float, default=bench.DEFAULT_P99_BOUND_MS,
                   help="a kind's capacity is the highest rate whose p99 stays under this with no errors "
                        "(default %(default)s)")
    o.add_argument("--max-connections", type=_positive_int, default=bench.DEFAULT_MAX_CONNECTIONS,
                   help="at most this many connections of all clients at once (default %(default)s)")
    o.add_argument("--open-loop-only", action="store_true",
                   help="skip the baseline rounds and the sweep of p (needs --rate)")
    return parser


def run_session(args: argparse.Namespace) -> int:
    config = configuration.load(_config_path(args.config))
    host = args.host or config.frontend.host
    port = args.port or config.frontend.port
    stocks = session.stock_names(args.stocks, str(config.stocks_csv))
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    spec = session.SessionSpec(stocks=tuple(stocks), p=args.p, iterations=args.iterations,
                               max_seconds=args.max_seconds, seed=seed)
    http = HttpClient(host, port)
    try:
        result = session.run(http, spec, note=lambda line: print(f"note: {line}", file=sys.stderr, flush=True))
    finally:
        http.close()
    snap = result.snapshot()
    kinds = summarize_all(snap["recorder"])
    print(session_summary(http.base, CLIENT_NAME, spec, snap, kinds, snap["mismatch_lines"]))
    if kinds.get("lookup", {}).get("answered", 0) == 0:
        print(f"the frontend at {http.base} never answered: is the cluster running (./run.sh start)?",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0 if result.passed else 1


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        rates = openloop.parse_rates(args.rate) if args.rate else ()
    except ValueError as exc:
        parser.error(f"--rate: {exc}")
    if args.open_loop_only and not rates:
        parser.error("--open-loop-only needs --rate")
    spec = bench.BenchSpec(
        config=_config_path(args.config), spawn=args.spawn, out_dir=args.out or bench.default_out_dir(),
        curve=not args.no_curve,
        clients=args.clients, p_values=tuple(args.p), iterations=args.iterations, max_seconds=args.max_seconds,
        baseline_rounds=args.baseline_rounds, cache_size=args.cache_size, seed=args.seed,
        stocks=session.parse_stocks(args.stocks) if args.stocks else None,
        command="python -m client " + shlex.join(sys.argv[1:]),
        rates=rates, arrival=args.arrival, p99_bound_ms=args.p99_bound_ms, max_connections=args.max_connections,
        open_loop_only=args.open_loop_only,
    )
    # Not a terminal (a log, a pipe): wide enough for the tables not to wrap.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    return bench.run_bench(spec, console)


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    logs.configure("client", "warning")
    sys.exit(run_session(args) if args.command == "session" else run_bench(args, parser))


if __name__ == "__main__":
    run_main(main)
