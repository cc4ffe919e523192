"""``python -m client bench``: the HTTP benchmark.

What it runs, in order, each *phase* with the same number of concurrent
clients (worker processes, one keep-alive ``http.client`` connection each)
and the same count of iterations per client:

1. *baseline rounds* (``--baseline-rounds``, 3 by default), each four phases
   back to back: lookups (p = 0) against the bare Flask route
   (``bench/bare_route.py``), against the Bazaar frontend with its cache on,
   and with it off, then bare ZeroMQ REQ -> ROUTER round trips of a
   ``lookup`` answered by a ``stock`` (``bench/zmq_echo.py``). Ratios are taken within a round and
   summarized over rounds, so a burst of load from another tenant moves one
   round, not the result;
2. the *sweep*: for each p (``--p``), a session phase (lookups, trades with
   probability p, then every acknowledged trade read back) with the cache on,
   then with it off;
3. with ``--rate``, the *open loop* (:mod:`client.openloop`): for each
   offered rate of the sweep, ascending, three phases (their order reversed
   at every other rate): lookups against the bare route, cached lookups
   (the caching frontend), and trades (``POST /orders``, p = 1, through the
   caching frontend), each a schedule of ``-n`` requests (at most
   ``--max-seconds`` long) fixed in advance from ``--seed`` and split
   between the client processes, each sending its share on as many
   keep-alive connections as it needs (:mod:`client.pacer`). Latency counts
   from each request's due time. A kind's *capacity* is the highest rate
   whose p99 stays under ``--p99-bound-ms`` with no errors (a trade refused
   for want of stock is not an error); each is also given as a ratio to the
   bare route's. A kind that failed at two rates in a row is offered no
   higher rate. ``--open-loop-only`` skips 1 and 2 (and the servers only
   they use).

To switch the cache it starts two frontends of its own against the running
backends (``bench-cache`` with ``--cache``, ``bench-nocache`` with
``--no-cache``), on free ports, and stops them at the end. The backends are
those of ``--config`` (a cluster started with ``./run.sh start``), or, with
``--spawn``, a private cluster on free ports that it starts and stops
(with CURVE, or without it with ``--no-curve``).

Every ZeroMQ socket runs CURVE when the backends do (``[security] curve``),
the baseline too: the ZeroMQ echo is then a CURVE server with the ``tools``
key and its own ZAP handler, and the clients dial it with the ``tools`` key,
so the baseline pays what a frontend -> catalog trip pays. ``results.json``
says which (``meta.curve``).

Everything is bounded: every client loop by its iteration count and by
``--max-seconds`` of wall time (and the verification again), every phase by a
timeout, and the targets are 127.0.0.1 only. The results go to ``--out``
(default ``bench/results/<timestamp>/``): ``results.json``, ``results.csv``,
``summary.md`` (the tables in Markdown), the PNG plots (``capacity.png`` for
the open loop), and the servers' logs.
"""

from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import config as configuration
from common import security
from common.sockets import CurveClient
from harness.process import ROOT

from . import noise, openloop, plots, report
from .http import CLIENT_NAME, REQUEST_TIMEOUT_S, HttpClient
from .pacer import GIVE_UP_S, Planned
from .servers import Servers
from .session import MAX_QUANTITY, load_stocks
from .stats import decode, merge, new_histogram, percentiles_ms, summarize_all
from .workers import WorkerPool

DEFAULT_P_VALUES = (0.0, 0.2, 0.4, 0.6, 0.8)
# Extra time a phase may take beyond its clients' own caps before it is abandoned.
PHASE_SLACK_S = 30.0
# Untimed lookups (or round trips) each client sends before a phase starts.
WARMUP = 10
# The open loop's three kinds of load, in the order odd rates run them.
OPEN_KINDS = (
    {"label": "bare route", "target": "bare-route", "cache": None, "p": 0.0, "kind": "lookup"},
    {"label": "cached lookup", "target": "bazaar", "cache": True, "p": 0.0, "kind": "lookup"},
    {"label": "trade", "target": "bazaar", "cache": True, "p": 1.0, "kind": "trade"},
)
DEFAULT_P99_BOUND_MS = 50.0
DEFAULT_MAX_CONNECTIONS = 128


@dataclass(frozen=True)
class BenchSpec:
    """What to measure.

    :param config: config.toml of the running backends (ignored with ``spawn``).
    :param spawn: start a private cluster instead.
    :param curve: with ``spawn``, whether that cluster runs CURVE.
    :param clients: concurrent clients (worker processes), at least 1.
    :param p_values: the sweep's trade probabilities, each 0 to 1.
    :param iterations: lookups per client and phase.
    :param max_seconds: wall-time cap of each client's loop (and again of its verification).
    :param baseline_rounds: rounds of the baseline comparison (0: none).
    :param cache_size: the caching frontend's capacity; None: one entry per stock.
    :param seed: seeds every client's random choices, and the open loop's schedules.
    :param out_dir: where the results go.
    :param rates: the open loop's offered rates, requests per second (empty: no open loop).
    :param arrival: the open loop's arrivals, ``poisson`` or ``constant``.
    :param p99_bound_ms: the p99 latency a kind must stay under at a rate to pass it.
    :param max_connections: at most this many connections of all clients at once (open loop).
    :param open_loop_only: skip the baseline rounds and the p sweep.
    """

    config: Path
    spawn: bool
    out_dir: Path
    curve: bool = True
    clients: int = 5
    p_values: tuple[float, ...] = DEFAULT_P_VALUES
    iterations: int = 1000
    max_seconds: float = 60.0
    baseline_rounds: int = 3
    cache_size: int | None = None
    seed: int = 0
    stocks: tuple[str, ...] | None = None
    command: str = ""
    rates: tuple[float, ...] = ()
    arrival: str = "poisson"
    p99_bound_ms: float = DEFAULT_P99_BOUND_MS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    open_loop_only: bool = False


@dataclass
class Targets:
    """Where each phase's load goes (None: not started, no phase needs it)."""

    cache_port: int
    nocache_port: int | None
    bare_port: int
    zmq_endpoint: str | None
    stocks: tuple[str, ...]
    backends: dict[str, int] = field(default_factory=dict)  # node name -> pid
    zmq_curve: CurveClient | None = None  # the clients' keys for the echo (None: CURVE off)


def default_out_dir() -> Path:
    return ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")


def plan(spec: BenchSpec) -> list[dict[str, Any]]:
    """Every closed-loop phase, in the order they run."""
    steps: list[dict[str, Any]] = []
    if spec.open_loop_only:
        return steps
    for r in range(1, spec.baseline_rounds + 1):
        round_steps = [
            {"group": "baseline", "round": r, "label": "bare route", "target": "bare-route", "cache": None, "p": 0.0},
            {"group": "baseline", "round": r, "label": "cached lookup", "target": "bazaar", "cache": True, "p": 0.0},
            {"group": "baseline", "round": r, "label": "uncached lookup", "target": "bazaar", "cache": False,
             "p": 0.0},
            {"group": "baseline", "round": r, "label": "zmq round trip", "target": "zmq", "cache": None, "p": 0.0},
        ]
        # Every other round runs backwards (A B C D, D C B A, ...), so a slow
        # drift of the machine's load favours no phase of a pair of rounds.
        steps += round_steps if r % 2 else round_steps[::-1]
    for p in spec.p_values:
        for cache in (True, False):
            steps.append({"group": "sweep", "round": None, "label": f"cache {'on' if cache else 'off'} p={p:g}",
                          "target": "bazaar", "cache": cache, "p": p})
    return steps


def jobs_for(step: dict[str, Any], index: int, spec: BenchSpec, targets: Targets) -> list[dict[str, Any]]:
    """One job per client for phase number ``index``."""
    base = {"iterations": spec.iterations, "max_seconds": spec.max_seconds, "stocks": list(targets.stocks),
            "warmup": WARMUP, "p": step["p"]}
    if step["target"] == "zmq":
        base.update(kind="zmq", endpoint=targets.zmq_endpoint, curve=targets.zmq_curve)
    else:
        if step["target"] == "bare-route":
            port = targets.bare_port
        else:
            port = targets.cache_port if step["cache"] else targets.nocache_port
        base.update(kind="http", host="127.0.0.1", port=port, verify=step["target"] == "bazaar")
    return [{**base, "seed": spec.seed * 1_000_003 + index * 1000 + i} for i in range(spec.clients)]


def _cache_counters(port: int) -> dict[str, int] | None:
    http = HttpClient("127.0.0.1", port, timeout_s=5)
    reply = http.get("/stats")
    http.close()
    cache = (reply.data or {}).get("cache") if reply.ok else None
    if not cache or not cache.get("enabled"):
        return None
    return {k: cache.get(k, 0) for k in ("hits", "misses", "bypassed", "evictions", "invalidations", "flushes")}


class Watch:
    """The CPU time of every party, and the caching frontend's counters, around one phase."""

    def __init__(self, step: dict[str, Any], targets: Targets, pool: WorkerPool, servers: Servers) -> None:
        self.stats_port = targets.cache_port if step["target"] == "bazaar" and step["cache"] else None
        self.counters_before = _cache_counters(self.stats_port) if self.stats_port else None
        self.parties: noise.Parties = {"clients": ({os.getpid(), *pool.pids}, set())}
        self.parties.update({c.name: (set(), {c.pid}) for c in servers.children if c.pid is not None})
        self.parties.update({name: ({pid}, set()) for name, pid in targets.backends.items()})
        self.before = noise.sample(self.parties)

    def stop(self) -> tuple[dict[str, Any], dict[str, Any] | None, float]:
        """``(noise.between the samples, the cache counters' change or None, wall seconds)``."""
        after = noise.sample(self.parties)
        cache_stats = None
        if self.counters_before is not None:
            counters_after = _cache_counters(self.stats_port) or self.counters_before
            cache_stats = {k: counters_after[k] - self.counters_before[k] for k in self.counters_before}
            asked = cache_stats["hits"] + cache_stats["misses"] + cache_stats["bypassed"]
            cache_stats["hit_rate"] = round(cache_stats["hits"] / asked, 4) if asked else None
        return noise.between(self.before, after), cache_stats, after["t"] - self.before["t"]


def _cpu_us_per_request(cpu: dict[str, Any], wall_s: float, requests: int) -> dict[str, float]:
    """CPU time each process spent per request of a phase, in us."""
    return {name: round(cores * wall_s * 1e6 / max(1, requests), 1)
            for name, cores in cpu["parties"].items() if cores > 0}


def run_phase(step: dict[str, Any], index: int, spec: BenchSpec, targets: Targets, pool: WorkerPool,
              servers: Servers, progress: Progress) -> dict[str, Any]:
    """Run one closed-loop phase on every client; returns its document for the results."""
    task = progress.add_task(step["label"], total=spec.clients * spec.iterations)
    watch = Watch(step, targets, pool, servers)
    results = pool.run(jobs_for(step, index, spec, targets), timeout_s=2 * spec.max_seconds + PHASE_SLACK_S,
                       on_progress=lambda n: progress.update(task, completed=n))
    cpu, cache_stats, wall = watch.stop()
    progress.update(task, completed=spec.clients * spec.iterations, visible=False)
    totals = {key: sum(r[key] for r in results)
              for key in ("acked", "verified", "mismatches", "refused", "errors", "unknown", "settled", "unsettled")}
    totals["stopped_by_time"] = sum(r["stopped_by"] == "time" for r in results)
    totals["mismatch_lines"] = [line for r in results for line in r["mismatch_lines"]][:20]
    kinds = summarize_all(merge(r["recorder"] for r in results))
    requests = sum(s["count"] for s in kinds.values())
    return {**step, "clients": spec.clients, "iterations": spec.iterations, "wall_s": round(wall, 3),
            "noise": cpu, "cache_stats": cache_stats, "verification": totals, "kinds": kinds,
            # CPU time each process spent per request of the phase (its warm-up's CPU included, its count not).
            "cpu_us_per_request": _cpu_us_per_request(cpu, wall, requests)}


# --- the open loop ------------------------------------------------------------------


def open_schedule(spec: BenchSpec, rate: float, kind: dict[str, Any], stocks: tuple[str, ...]) -> list[Planned]:
    """One open-loop phase's requests: the arrival offsets of ``rate`` (the same
    for the three kinds of a rate) and, for each, a stock drawn from the seed
    (and for a trade a quantity and side)."""
    offsets = openloop.schedule(rate, spec.iterations, spec.max_seconds, spec.arrival, spec.seed)
    rng = random.Random(f"bazaar-open-requests:{spec.seed}:{rate!r}")
    planned = []
    for offset in offsets:
        name = rng.choice(stocks)
        quantity, side = rng.randint(1, MAX_QUANTITY), rng.choice(("buy", "sell"))
        if kind["kind"] == "trade":
            payload: tuple = ("POST", "/orders", {"name": name, "quantity": quantity, "type": side})
        else:
            payload = ("GET", f"/stocks/{quote(name)}")
        planned.append(Planned(offset, kind["kind"], payload))
    return planned


def open_jobs(spec: BenchSpec, planned: list[Planned], kind: dict[str, Any], targets: Targets,
              index: int) -> list[dict[str, Any]]:
    """One job per client: every ``clients``-th request of the schedule, and
    an equal share of the connections."""
    port = targets.bare_port if kind["target"] == "bare-route" else targets.cache_port
    per_client = max(1, -(-spec.max_connections // spec.clients))
    return [{"kind": "open", "host": "127.0.0.1", "port": port, "planned": planned[i::spec.clients],
             "max_connections": per_client, "stocks": list(targets.stocks), "warmup": WARMUP,
             "seed": spec.seed * 1_000_003 + index * 1000 + i, "give_up_s": GIVE_UP_S}
            for i in range(spec.clients)]


def run_open_phase(rate: float, kind: dict[str, Any], index: int, spec: BenchSpec, targets: Targets,
                   pool: WorkerPool, servers: Servers, progress: Progress) -> dict[str, Any]:
    """Run one open-loop phase (one kind at one rate); returns its document."""
    planned = open_schedule(spec, rate, kind, targets.stocks)
    step = {"group": "open", "round": None, "label": f"{kind['label']} at {rate:g}/s", "target": kind["target"],
            "cache": kind["cache"], "p": kind["p"], "kind_label": kind["label"], "request_kind": kind["kind"],
            "offered_rps": rate}
    task = progress.add_task(step["label"], total=len(planned))
    watch = Watch(step, targets, pool, servers)
    span_s = planned[-1].offset_s if planned else 0.0
    results = pool.run(open_jobs(spec, planned, kind, targets, index),
                       timeout_s=span_s + GIVE_UP_S + REQUEST_TIMEOUT_S + PHASE_SLACK_S,
                       on_progress=lambda n: progress.update(task, completed=n))
    cpu, cache_stats, wall = watch.stop()
    progress.update(task, completed=len(planned), visible=False)
    kinds = summarize_all(merge(r["recorder"] for r in results))
    lag = new_histogram()
    for r in results:
        lag.add(decode(r["lag"]))
    figures = kinds.get(kind["kind"], {})
    point = openloop.RatePoint(rate, figures.get("p99_ms"), figures.get("errors", 0))
    return {**step, "clients": spec.clients, "arrival": spec.arrival, "schedule_s": round(span_s, 3),
            "planned": len(planned), "sent": sum(r["sent"] for r in results),
            "unsent": sum(r["unsent"] for r in results), "connections": sum(r["connections"] for r in results),
            "send_lag": percentiles_ms(lag), "wall_s": round(wall, 3), "noise": cpu,
            "cache_stats": cache_stats, "kinds": kinds, "passed": openloop.passes(point, spec.p99_bound_ms),
            "cpu_us_per_request": _cpu_us_per_request(cpu, wall, len(planned))}


def run_open_sweep(spec: BenchSpec, targets: Targets, pool: WorkerPool, servers: Servers, progress: Progress,
                   say, first_index: int) -> list[dict[str, Any]]:
    """Every rate of the sweep, ascending, for each kind (in alternating
    order) until the kind failed at :data:`client.openloop.FAILURES_TO_STOP`
    rates in a row."""
    phases: list[dict[str, Any]] = []
    points: dict[str, list[openloop.RatePoint]] = {k["label"]: [] for k in OPEN_KINDS}
    overall = progress.add_task("open loop", total=len(spec.rates) * len(OPEN_KINDS))
    index = first_index
    for r, rate in enumerate(spec.rates):
        for kind in (OPEN_KINDS if r % 2 == 0 else OPEN_KINDS[::-1]):
            progress.advance(overall)
            if not openloop.keep_going(points[kind["label"]], spec.p99_bound_ms):
                continue
            index += 1
            phase = run_open_phase(rate, kind, index, spec, targets, pool, servers, progress)
            figures = phase["kinds"].get(kind["kind"], {})
            points[kind["label"]].append(openloop.RatePoint(rate, figures.get("p99_ms"), figures.get("errors", 0)))
            phases.append(phase)
            say(_open_line(phase, spec.p99_bound_ms))
    progress.update(overall, visible=False)
    return phases


def _open_line(ph: dict[str, Any], bound_ms: float) -> str:
    s = next(iter(ph["kinds"].values()), {})
    verdict = "pass" if ph["passed"] else "[bold red]FAIL[/]"
    return (f"open loop {ph['label']} ({ph['arrival']}): {s.get('count', 0)} sent, {s.get('errors', 0)} errors, "
            f"{s.get('refused', 0)} refused; from due time p50 {s.get('p50_ms') or 0:.2f} ms, "
            f"p99 {s.get('p99_ms') or 0:.2f} ms, max {s.get('max_ms') or 0:.2f} ms; "
            f"{s.get('throughput_rps') or 0:.0f}/s answered on {ph['connections']} connections; "
            f"{verdict} (p99 < {bound_ms:g} ms, no errors)")


def _phase_line(k: int, n: int, ph: dict[str, Any]) -> str:
    parts = []
    for kind, s in ph["kinds"].items():
        parts.append(f"{kind} p50 {s['p50_ms'] or 0:.2f} ms {s['throughput_rps'] or 0:.0f}/s")
    other = ph["noise"].get("other_cores")
    busiest = sorted(ph["noise"].get("parties", {}).items(), key=lambda item: -item[1])[:3]
    cores = ", ".join(f"{name} {value:.2f}" for name, value in busiest)
    bad = ph.get("verification", {}).get("mismatches")
    where = "" if ph["round"] is None else f" (round {ph['round']})"
    return (f"[{k}/{n}] {ph['group']} {ph['label']}{where}: "
            + ", ".join(parts) + f"; {ph['wall_s']:.1f} s"
            + ("" if other is None else f"; cores: {cores}, other tenants {other:.2f}")
            + (f" [bold red]{bad} MISMATCHES[/]" if bad else ""))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_bench(spec: BenchSpec, console: Console) -> int:
    """Run the whole benchmark and write its results.

    :returns: the exit status: 0, or 1 if any acknowledged trade failed its
        verification, or 2 if the benchmark could not run.
    """
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    closed = not spec.open_loop_only
    console.print(f"Bazaar HTTP benchmark -> {spec.out_dir}")
    console.print(f"client: {CLIENT_NAME}; {spec.clients} client processes; {spec.iterations} iterations each "
                  f"per phase; wall-time cap {spec.max_seconds:g} s per loop")
    if spec.rates:
        console.print(f"open loop: {spec.arrival} arrivals at {', '.join(f'{r:g}' for r in spec.rates)} requests/s, "
                      f"{spec.iterations} requests per phase (at most {spec.max_seconds:g} s of schedule), "
                      f"up to {spec.max_connections} connections; capacity: p99 < {spec.p99_bound_ms:g} ms, "
                      f"no errors")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    servers = Servers(spec.out_dir, console.print)
    pool: WorkerPool | None = None
    started, load_start = time.time(), noise.loadavg()
    try:
        config = servers.spawn_cluster(curve=spec.curve) if spec.spawn else spec.config
        cfg = configuration.load(config)
        console.print(f"CURVE is {'on' if cfg.security.curve else 'OFF'} ([security] curve in {config})")
        stocks = spec.stocks or load_stocks(str(cfg.stocks_csv))
        cache_size = spec.cache_size or len(stocks)
        others = "; cache off), the bare route and the ZeroMQ echo" if closed else ") and the bare route"
        console.print(f"starting the benchmark's own frontends against the backends of {config} "
                      f"(cache on: {cache_size} entries{others}; they are stopped at the end")
        _, cache_port = servers.frontend(config, "bench-cache", True, cache_size)
        nocache_port = servers.frontend(config, "bench-nocache", False, None)[1] if closed else None
        _, bare_port = servers.bare_route(config)
        zmq_endpoint = servers.zmq_echo(config)[1] if closed else None
        zmq_curve = security.node_keys(cfg, security.TOOLS).client(security.TOOLS)
        backend = ({name: n.pid for name, n in servers.cluster.nodes.items() if n.alive}
                   if servers.cluster is not None else noise.backend_pids(config))
        targets = Targets(cache_port, nocache_port, bare_port, zmq_endpoint, tuple(stocks), backend, zmq_curve)
        pool = WorkerPool(spec.clients)
        steps = plan(spec)
        phases = []
        columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            overall = progress.add_task("all phases", total=len(steps))
            for k, step in enumerate(steps, start=1):
                phases.append(run_phase(step, k, spec, targets, pool, servers, progress))
                console.print(_phase_line(k, len(steps), phases[-1]))
                progress.advance(overall)
            progress.update(overall, visible=False)
            if spec.rates:
                phases += run_open_sweep(spec, targets, pool, servers, progress, console.print, len(steps))
        doc = results_doc(spec, phases, cache_size, config, started, load_start, cfg.security.curve)
        show(console, doc)
        write_results(spec.out_dir, doc)
        console.print(f"results: {spec.out_dir}/results.json, results.csv, summary.md, "
                      f"{', '.join(sorted(p.name for p in spec.out_dir.glob('*.png')))}")
        return 1 if any(ph.get("verification", {}).get("mismatches") for ph in phases) else 0
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything the benchmark started")
        return 130
    except Exception as exc:  # a server that did not start, a worker that failed
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 2
    finally:
        if pool is not None:
            pool.close()
            console.print(f"stopped the {spec.clients} client processes")
        servers.close()
        signal.signal(signal.SIGTERM, previous)


def results_doc(spec: BenchSpec, phases: list[dict[str, Any]], cache_size: int, config: Path, started: float,
                load_start, curve: bool = True) -> dict[str, Any]:
    """Everything the run measured, for ``results.json``."""
    baseline = [ph for ph in phases if ph["group"] == "baseline"]
    sweep = [ph for ph in phases if ph["group"] == "sweep"]
    rounds = []
    for r in range(1, spec.baseline_rounds + 1 if not spec.open_loop_only else 1):
        by_label = {ph["label"]: ph for ph in baseline if ph["round"] == r}
        rounds.append(report.round_ratios(by_label.get("bare route"), by_label.get("cached lookup"),
                                          by_label.get("uncached lookup"), by_label.get("zmq round trip")))
    capacity = (report.capacity_summary([ph for ph in phases if ph["group"] == "open"], spec.rates,
                                        spec.p99_bound_ms) if spec.rates else None)
    others = [ph["noise"]["other_cores"] for ph in phases if ph["noise"].get("other_cores") is not None]
    return {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": round(time.time() - started, 1), "command": spec.command, "commit": _git_commit(),
            "client": CLIENT_NAME, "clients": spec.clients, "iterations": spec.iterations,
            "max_seconds": spec.max_seconds, "p_values": [] if spec.open_loop_only else list(spec.p_values),
            "baseline_rounds": 0 if spec.open_loop_only else spec.baseline_rounds, "cache_size": cache_size,
            "seed": spec.seed,
            "backends": "private cluster (--spawn)" if spec.spawn else str(config),
            "curve": curve,
            "frontend_server": "gevent.pywsgi, one process (frontend/server.py)",
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_start": _rounded(load_start), "loadavg_end": _rounded(noise.loadavg()),
            "other_tenant_cores": {"median": sorted(others)[len(others) // 2] if others else None,
                                   "max": max(others) if others else None},
            "open_loop": None if not spec.rates else {
                "rates_rps": list(spec.rates), "arrival": spec.arrival, "requests_per_phase": spec.iterations,
                "p99_bound_ms": spec.p99_bound_ms, "max_connections": spec.max_connections,
                "give_up_s": GIVE_UP_S},
        },
        "phases": phases,
        "baseline_rounds": rounds,
        "capacity": capacity,
        "ratios": report.baseline_ratios(rounds, sweep, capacity),
    }


def _rounded(values) -> list[float] | None:
    return None if values is None else [round(v, 2) for v in values]


def show(console: Console, doc: dict[str, Any]) -> None:
    """The tables and the verdicts on the terminal."""
    phases = doc["phases"]
    baseline = [ph for ph in phases if ph["group"] == "baseline"]
    sweep = [ph for ph in phases if ph["group"] == "sweep"]
    if baseline:
        console.print(report.baseline_table(baseline))
    if sweep:
        console.print(report.sweep_table(sweep))
    if doc.get("capacity"):
        console.print(report.open_table([ph for ph in phases if ph["group"] == "open"], doc["capacity"]))
        console.print(report.capacity_table(doc["capacity"]))
    console.print(report.ratio_table(doc["ratios"]))
    meta = doc["meta"]

    def load(values) -> str:
        return "-" if values is None else " ".join(f"{x:.2f}" for x in values)

    console.print(f"client: {meta['client']}. Machine: {meta['cpus']} CPUs, load average {load(meta['loadavg_start'])} "
                  f"at the start, {load(meta['loadavg_end'])} at the end; other tenants used "
                  f"{meta['other_tenant_cores']['median']} cores (median over phases), "
                  f"{meta['other_tenant_cores']['max']} at most.", highlight=False)
    for ph in phases:
        for line in ph.get("verification", {}).get("mismatch_lines", []):
            console.print(f"[bold red]mismatch[/] ({ph['label']}): {line}")


def write_results(out_dir: Path, doc: dict[str, Any]) -> None:
    report.write_json(out_dir / "results.json", doc)
    report.write_csv(out_dir / "results.csv", doc["phases"])
    (out_dir / "summary.md").write_text(report.markdown_summary(doc))
    sweep = [ph for ph in doc["phases"] if ph["group"] == "sweep"]
    meta = doc["meta"]
    subtitle = (f"{meta['clients']} clients x {meta['iterations']} iterations, {meta['cpus']} CPUs, "
                f"commit {meta['commit']}")
    bare = doc["ratios"].get("bare_route_p50_ms", {}).get("median")
    if sweep:
        plots.write_plots(out_dir, sweep, bare, subtitle)
    if doc.get("capacity"):
        open_loop = meta["open_loop"]
        plots.capacity_plot(out_dir / "capacity.png", doc["capacity"],
                            f"{open_loop['arrival']} arrivals, {open_loop['requests_per_phase']} requests per rate "
                            f"and kind, {meta['clients']} client processes, {meta['cpus']} CPUs, "
                            f"commit {meta['commit']}")
