"""Where a trade's time goes: the latency budget, stage by stage.

    .venv/bin/python -m bench.trace [--spawn [--no-curve] | --config config.toml] [-n 600] [--load 0]

Sends ``-n`` trades one after another over one keep-alive HTTP connection,
each with ``X-Bazaar-Trace: 1``, so every node on its path stamps it
(:mod:`common.trace`), and prints p50 and p99 of every stage, from the HTTP
request to the response, with their sum against the client's own measure.
``--load K`` runs K other clients (separate processes, untraced trades with
lookups, as ``python -m client session -p 1``) meanwhile, to see the budget
under load. Before the trades it measures, the same way, the cached lookup
and the bare ZeroMQ round trip to the catalog, so each figure has its floor
next to it in the same run.

``--spawn`` starts a private cluster on free loopback ports (and stops it),
with CURVE unless ``--no-curve``; otherwise the backends of ``--config`` must
run (``./run.sh start``). The bare round trip to the catalog runs CURVE when
the cluster does, with the ``tools`` key. Only 127.0.0.1 is targeted; every
loop is bounded by its count and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import zmq

from common import codec, security
from common import config as configuration
from common.protocol import Lookup
from common.sockets import CurveClient, apply_curve
from common.trace import PARALLEL, STAGES, TRACE_HEADER, stages
from harness.cluster import Cluster
from harness.process import Process

STOCKS = ("GameStart", "FishCo", "BoarCo", "MenhirCo")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def _http(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def timed_lookups(port: int, n: int, deadline: float) -> list[float]:
    conn = _http(port)
    out = []
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            conn.request("GET", f"/stocks/{STOCKS[i % len(STOCKS)]}")
            conn.getresponse().read()
            out.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return out


def zmq_round_trips(endpoint: str, n: int, deadline: float, curve: CurveClient | None = None) -> list[float]:
    ctx = zmq.Context()
    sock = apply_curve(ctx.socket(zmq.REQ), curve)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out = []
    try:
        frame = codec.encode(Lookup("GameStart"))
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            sock.send(frame)
            if not sock.poll(5000):
                raise RuntimeError(f"no answer from the catalog at {endpoint}")
            codec.decode(sock.recv())
            out.append(time.perf_counter() - t0)
    finally:
        sock.close(linger=0)
        ctx.term()
    return out


def traced_trades(port: int, n: int, deadline: float) -> tuple[list[dict[str, float]], list[float], int]:
    """``n`` traced trades; returns each one's stages, the client's latencies,
    and how many answers had no complete trace (refusals, replays)."""
    conn = _http(port)
    budgets, totals, incomplete = [], [], 0
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            side = "buy" if i % 2 else "sell"
            # bytes, not str: http.client sends a bytes body in the same segment as the headers
            body = json.dumps({"name": STOCKS[i % len(STOCKS)], "quantity": 1, "type": side}).encode()
            headers = {"Content-Type": "application/json", TRACE_HEADER: "1", "Idempotency-Key": uuid.uuid4().hex}
            t0 = time.monotonic()
            conn.request("POST", "/orders", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            t1 = time.monotonic()
            stamps = json.loads(resp.getheader(TRACE_HEADER) or "{}")
            budget = stages({**stamps, "client_send": t0, "client_done": t1}) if resp.status == 200 else None
            if budget is None:
                incomplete += 1
                continue
            budgets.append(budget)
            totals.append(t1 - t0)
    finally:
        conn.close()
    return budgets, totals, incomplete


def background_load(config: Path, port: int, clients: int, deadline: float, logs: Path) -> list[Process]:
    """``clients`` client sessions (p = 1, with lookups) trading until stopped."""
    seconds = f"{max(1.0, deadline - time.monotonic()):.0f}"
    procs = []
    for k in range(clients):
        argv = ["-m", "client", "session", "--config", str(config), "--port", str(port), "-p", "1", "-n", "1000000",
                "--max-seconds", seconds, "--seed", str(k)]
        procs.append(Process(f"load-{k}", argv, logs / f"load-{k}.log").start())
    return procs


def report(budgets: list[dict[str, float]], totals: list[float], lookups: list[float], zmq_rt: list[float],
           incomplete: int) -> str:
    lines = [f"{len(budgets)} traced trades ({incomplete} without a complete trace left out); "
             f"times in ms, p50 and p99 of each stage over the trades", ""]
    lines.append(f"| {'stage':<38} | p50 ms | p99 ms |")
    lines.append(f"|{'-' * 40}|-------:|-------:|")
    sum50 = 0.0
    for name, _, _ in STAGES + PARALLEL:
        values = [b[name] for b in budgets]
        p50, p99 = _pct(values, 0.5) * 1000, _pct(values, 0.99) * 1000
        if (name, _, _) not in PARALLEL:
            sum50 += p50
        lines.append(f"| {name:<38} | {p50:6.3f} | {p99:6.3f} |")
    label = "sum of the stages' p50 (but the parallel)"
    lines.append(f"| {label:<38} | {sum50:6.3f} |        |")
    lines.append(f"| {'trade, as the client measured':<38} | {_pct(totals, 0.5) * 1000:6.3f} | "
                 f"{_pct(totals, 0.99) * 1000:6.3f} |")
    if lookups:
        lines.append(f"| {'cached lookup, same run':<38} | {_pct(lookups, 0.5) * 1000:6.3f} | "
                     f"{_pct(lookups, 0.99) * 1000:6.3f} |")
    if zmq_rt:
        lines.append(f"| {'bare ZeroMQ round trip to the catalog':<38} | {_pct(zmq_rt, 0.5) * 1000:6.3f} | "
                     f"{_pct(zmq_rt, 0.99) * 1000:6.3f} |")
    if lookups:
        lines += ["", f"trade p50 / cached lookup p50: {statistics.median(totals) / statistics.median(lookups):.2f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.toml", help="config of the running cluster (default %(default)s)")
    parser.add_argument("--spawn", action="store_true", help="start a private cluster on free ports instead")
    parser.add_argument("--no-curve", action="store_true", help="with --spawn: the private cluster runs without CURVE")
    parser.add_argument("-n", "--trades", type=int, default=600, help="traced trades (default %(default)s)")
    parser.add_argument("--load", type=int, default=0, help="other clients trading meanwhile (default %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-time cap (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write every trade's stages to this file")
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    tmp = cluster = load = None
    try:
        tmp = tempfile.TemporaryDirectory(prefix="bazaar-trace-")
        if args.spawn:
            print(f"starting a private cluster in {tmp.name}", file=sys.stderr)
            cluster = Cluster(Path(tmp.name), settings={"security": {"curve": not args.no_curve}}).start()
            port, catalog = cluster.http_ports[0], cluster.endpoint("catalog")
        else:
            config = configuration.load(args.config)
            port, catalog = config.frontend.port, config.catalog.endpoint.connect
        config_path = cluster.config_path if cluster is not None else Path(args.config)
        cfg = configuration.load(config_path)
        curve = security.node_keys(cfg, security.TOOLS).client("catalog")
        load = background_load(config_path, port, args.load, deadline, Path(tmp.name) / "logs")
        warm = min(50, args.trades)
        traced_trades(port, warm, deadline)  # warm-up: connections, caches, SQLite pages
        lookups = timed_lookups(port, args.trades, deadline)
        zmq_rt = zmq_round_trips(catalog, args.trades, deadline, curve)
        budgets, totals, incomplete = traced_trades(port, args.trades, deadline)
        print(f"bench.trace: {args.trades} trades, {args.load} background clients, "
              f"CURVE {'on' if cfg.security.curve else 'off'}, pid {os.getpid()}")
        print(report(budgets, totals, lookups, zmq_rt, incomplete))
        if args.json:
            args.json.write_text(json.dumps({"stages": budgets, "totals": totals}) + "\n")
    finally:
        for proc in load or []:
            proc.stop(timeout=5)
        if cluster is not None:
            cluster.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
