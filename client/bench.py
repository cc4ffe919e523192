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
   then with it off.

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
``summary.md`` (the tables in Markdown), the PNG plots, and the servers' logs.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import config as configuration
from common import security
from common.sockets import CurveClient
from harness.process import ROOT

from . import noise, plots, report
from .http import CLIENT_NAME, HttpClient
from .servers import Servers
from .session import load_stocks
from .stats import merge, summarize_all
from .workers import WorkerPool

DEFAULT_P_VALUES = (0.0, 0.2, 0.4, 0.6, 0.8)
# Extra time a phase may take beyond its clients' own caps before it is abandoned.
PHASE_SLACK_S = 30.0
# Untimed lookups (or round trips) each client sends before a phase starts.
WARMUP = 10


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
    :param seed: seeds every client's random choices.
    :param out_dir: where the results go.
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


@dataclass
class Targets:
    """Where each phase's load goes."""

    cache_port: int
    nocache_port: int
    bare_port: int
    zmq_endpoint: str
    stocks: tuple[str, ...]
    backends: dict[str, int] = field(default_factory=dict)  # node name -> pid
    zmq_curve: CurveClient | None = None  # the clients' keys for the echo (None: CURVE off)


def default_out_dir() -> Path:
    return ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")


def plan(spec: BenchSpec) -> list[dict[str, Any]]:
    """Every phase, in the order they run."""
    steps = []
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


def run_phase(step: dict[str, Any], index: int, spec: BenchSpec, targets: Targets, pool: WorkerPool,
              servers: Servers, progress: Progress) -> dict[str, Any]:
    """Run one phase on every client; returns its document for the results."""
    task = progress.add_task(step["label"], total=spec.clients * spec.iterations)
    stats_port = targets.cache_port if step["target"] == "bazaar" and step["cache"] else None
    counters_before = _cache_counters(stats_port) if stats_port else None
    parties: noise.Parties = {"clients": ({os.getpid(), *pool.pids}, set())}
    parties.update({c.name: (set(), {c.pid}) for c in servers.children if c.pid is not None})
    parties.update({name: ({pid}, set()) for name, pid in targets.backends.items()})
    before = noise.sample(parties)
    results = pool.run(jobs_for(step, index, spec, targets), timeout_s=2 * spec.max_seconds + PHASE_SLACK_S,
                       on_progress=lambda n: progress.update(task, completed=n))
    after = noise.sample(parties)
    progress.update(task, completed=spec.clients * spec.iterations, visible=False)
    cache_stats = None
    if counters_before is not None:
        counters_after = _cache_counters(stats_port) or counters_before
        cache_stats = {k: counters_after[k] - counters_before[k] for k in counters_before}
        asked = cache_stats["hits"] + cache_stats["misses"] + cache_stats["bypassed"]
        cache_stats["hit_rate"] = round(cache_stats["hits"] / asked, 4) if asked else None
    totals = {key: sum(r[key] for r in results)
              for key in ("acked", "verified", "mismatches", "refused", "errors", "unknown", "settled", "unsettled")}
    totals["stopped_by_time"] = sum(r["stopped_by"] == "time" for r in results)
    totals["mismatch_lines"] = [line for r in results for line in r["mismatch_lines"]][:20]
    kinds = summarize_all(merge(r["recorder"] for r in results))
    wall = after["t"] - before["t"]
    cpu = noise.between(before, after)
    requests = sum(s["count"] for s in kinds.values()) or 1
    return {**step, "clients": spec.clients, "iterations": spec.iterations, "wall_s": round(wall, 3),
            "noise": cpu, "cache_stats": cache_stats, "verification": totals, "kinds": kinds,
            # CPU time each process spent per request of the phase (warm-up included in both).
            "cpu_us_per_request": {name: round(cores * wall * 1e6 / requests, 1)
                                   for name, cores in cpu["parties"].items() if cores > 0}}


def _phase_line(k: int, n: int, ph: dict[str, Any]) -> str:
    parts = []
    for kind, s in ph["kinds"].items():
        parts.append(f"{kind} p50 {s['p50_ms'] or 0:.2f} ms {s['throughput_rps'] or 0:.0f}/s")
    other = ph["noise"].get("other_cores")
    busiest = sorted(ph["noise"].get("parties", {}).items(), key=lambda item: -item[1])[:3]
    cores = ", ".join(f"{name} {value:.2f}" for name, value in busiest)
    bad = ph["verification"]["mismatches"]
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
    console.print(f"Bazaar HTTP benchmark -> {spec.out_dir}")
    console.print(f"client: {CLIENT_NAME}; {spec.clients} client processes; {spec.iterations} iterations each "
                  f"per phase; wall-time cap {spec.max_seconds:g} s per loop")
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
        console.print(f"starting the benchmark's own frontends against the backends of {config} "
                      f"(cache on: {cache_size} entries; cache off), the bare route and the ZeroMQ echo; "
                      f"they are stopped at the end")
        _, cache_port = servers.frontend(config, "bench-cache", True, cache_size)
        _, nocache_port = servers.frontend(config, "bench-nocache", False, None)
        _, bare_port = servers.bare_route(config)
        _, zmq_endpoint = servers.zmq_echo(config)
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
        doc = results_doc(spec, phases, cache_size, config, started, load_start, cfg.security.curve)
        show(console, doc)
        write_results(spec.out_dir, doc)
        console.print(f"results: {spec.out_dir}/results.json, results.csv, summary.md, "
                      f"{', '.join(p.name for p in spec.out_dir.glob('*.png'))}")
        return 1 if any(ph["verification"]["mismatches"] for ph in phases) else 0
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
    for r in range(1, spec.baseline_rounds + 1):
        by_label = {ph["label"]: ph for ph in baseline if ph["round"] == r}
        rounds.append(report.round_ratios(by_label.get("bare route"), by_label.get("cached lookup"),
                                          by_label.get("uncached lookup"), by_label.get("zmq round trip")))
    others = [ph["noise"]["other_cores"] for ph in phases if ph["noise"].get("other_cores") is not None]
    return {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": round(time.time() - started, 1), "command": spec.command, "commit": _git_commit(),
            "client": CLIENT_NAME, "clients": spec.clients, "iterations": spec.iterations,
            "max_seconds": spec.max_seconds, "p_values": list(spec.p_values),
            "baseline_rounds": spec.baseline_rounds, "cache_size": cache_size, "seed": spec.seed,
            "backends": "private cluster (--spawn)" if spec.spawn else str(config),
            "curve": curve,
            "frontend_server": "gevent.pywsgi, one process (frontend/server.py)",
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "loadavg_start": _rounded(load_start), "loadavg_end": _rounded(noise.loadavg()),
            "other_tenant_cores": {"median": sorted(others)[len(others) // 2] if others else None,
                                   "max": max(others) if others else None},
        },
        "phases": phases,
        "baseline_rounds": rounds,
        "ratios": report.baseline_ratios(rounds, sweep),
    }


def _rounded(values) -> list[float] | None:
    return None if values is None else [round(v, 2) for v in values]


def show(console: Console, doc: dict[str, Any]) -> None:
    """The tables and the verdicts on the terminal."""
    phases = doc["phases"]
    baseline = [ph for ph in phases if ph["group"] == "baseline"]
    if baseline:
        console.print(report.baseline_table(baseline))
    console.print(report.sweep_table([ph for ph in phases if ph["group"] == "sweep"]))
    if baseline:
        console.print(report.ratio_table(doc["ratios"]))
    meta = doc["meta"]

    def load(values) -> str:
        return "-" if values is None else " ".join(f"{x:.2f}" for x in values)

    console.print(f"client: {meta['client']}. Machine: {meta['cpus']} CPUs, load average {load(meta['loadavg_start'])} "
                  f"at the start, {load(meta['loadavg_end'])} at the end; other tenants used "
                  f"{meta['other_tenant_cores']['median']} cores (median over phases), "
                  f"{meta['other_tenant_cores']['max']} at most.", highlight=False)
    for ph in phases:
        for line in ph["verification"]["mismatch_lines"]:
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
