"""What the session and the benchmark print and write.

* :func:`session_summary`: the session's few lines (counts, failures by
  kind, latency p50/p99, the verification);
* :func:`baseline_ratios`: the benchmark's ratios against its baselines,
  each computed within one round (measurements taken back to back) and then
  summarized over the rounds, which is what keeps them steady on a noisy
  machine;
* :func:`capacity_summary`: the open loop's capacity of each kind and its
  ratio to the bare route's;
* :func:`sweep_table`, :func:`baseline_table`, :func:`open_table`,
  :func:`capacity_table`, :func:`ratio_table`: rich tables for the terminal;
* :func:`write_json`, :func:`write_csv`: the raw figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from . import openloop
from .stats import spread

# The targets the benchmark reports against (it does not assert them), from
# issue 12 ("trade path at its physical floor"). The trade figures come from
# the sweep's trading phase with the cache on and the highest p.
TARGET_CACHED_THROUGHPUT_RATIO = 0.9        # cached lookups / bare route, requests per second
TARGET_TRADE_OVER_BARE_P50 = 3.3            # several clients: trade p50 / bare route p50
TARGET_TRADES_OVER_BARE_RPS = 0.3           # several clients: trades/s / bare route req/s
TARGET_SERVER_CPU_MS_PER_ITERATION = 1.5    # a lookup, a trade and its read-back, every Bazaar process
TARGET_TRADE_OVER_CACHED_P50 = 2.5          # one client: trade p50 / cached lookup p50
TARGET_ORDER_OVER_CACHED_P50 = 1.3          # one client: order read p50 / cached lookup p50
# Issue 19: the frontend's CPU per cached lookup against the bare Flask route's
# per request, both on the frontend's server, in the same round.
TARGET_CACHED_OVER_BARE_CPU = 1.15
# The open loop's capacities (p99 under the bound, no errors) against the bare route's.
TARGET_CACHED_OVER_BARE_CAPACITY = TARGET_CACHED_THROUGHPUT_RATIO
TARGET_TRADES_OVER_BARE_CAPACITY = TARGET_TRADES_OVER_BARE_RPS
# Processes of a phase that are not Bazaar's (the load and the baselines).
NOT_BAZAAR = ("clients", "bare-route", "zmq-echo")

CSV_FIELDS = ("group", "round", "phase", "target", "cache", "p", "offered_rps", "kind", "count", "ok", "failed",
              "refused", "errors", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "throughput_rps",
              "kind_wall_s", "phase_wall_s", "busy_cores", "client_cores", "server_cores", "other_cores",
              "cache_hit_rate", "mismatches")
# The server process of each kind of phase, for its CPU per request.
SERVER_OF = {"bare-route": "bare-route", "zmq": "zmq-echo"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- the session --------------------------------------------------------------


def session_summary(target: str, client: str, spec, snap: dict[str, Any], kinds: dict[str, dict],
                    mismatch_lines: list[str]) -> str:
    """The session's report, a few lines of plain text.

    :param spec: the :class:`client.session.SessionSpec` that ran.
    :param snap: the :meth:`client.session.SessionResult.snapshot`.
    :param kinds: :func:`client.stats.summarize_all` of the session's recorder.
    """
    lines = [f"session against {target} (client: {client}), p={spec.p}, seed={spec.seed}: "
             f"{snap['iterations']} iterations in {snap['trade_s']:.1f} s"
             + (" (stopped by the time cap)" if snap["stopped_by"] == "time" else "")]
    for kind in ("lookup", "trade", "order"):
        s = kinds.get(kind)
        if s is None:
            continue
        fails = ", ".join(f"{name} x{n}" for name, n in s["failures"].items()) or "none"
        lines.append(f"  {kind:<6} {s['count']:6d} sent {s['ok']:6d} ok   p50 {_ms(s['p50_ms'])} ms"
                     f"  p99 {_ms(s['p99_ms'])} ms   failures: {fails}")
    lines.append(f"trades: {snap['acked']} acknowledged, {snap['refused']} refused, {snap['unknown']} without "
                 f"an answer ({snap['settled']} settled by resending with their key, {snap['unsettled']} still "
                 f"unknown), {snap['errors']} other errors")
    if snap.get("outages"):
        lines.append(f"frontend unreachable {snap['outages']} time(s), {snap['longest_outage_s']:.1f} s at the "
                     f"longest: {snap['outage_retries']} requests resent while it was down")
    if snap["mismatches"] or snap["unsettled"]:
        lines.append(f"FAILED: {snap['verified']}/{snap['acked']} acknowledged trades verified, "
                     f"{snap['mismatches']} mismatches, {snap['unsettled']} trades of unknown outcome")
        lines += [f"  {line}" for line in mismatch_lines]
    else:
        lines.append(f"verified: all {snap['verified']} acknowledged trades read back identical with GET /orders/<n>")
    return "\n".join(lines)


# --- ratios ---------------------------------------------------------------------


def _kind(phase: dict[str, Any] | None, kind: str, key: str) -> float | None:
    if phase is None:
        return None
    return phase["kinds"].get(kind, {}).get(key)


def round_ratios(bare: dict, cached: dict, uncached: dict, zmq: dict) -> dict[str, float | None]:
    """The ratios of one baseline round (four phases run back to back)."""
    bare_rps, cached_rps = _kind(bare, "lookup", "throughput_rps"), _kind(cached, "lookup", "throughput_rps")
    uncached_rps = _kind(uncached, "lookup", "throughput_rps")
    bare_p50, cached_p50 = _kind(bare, "lookup", "p50_ms"), _kind(cached, "lookup", "p50_ms")
    uncached_p50, zmq_p50 = _kind(uncached, "lookup", "p50_ms"), _kind(zmq, "roundtrip", "p50_ms")
    bare_cpu = None if bare is None else bare.get("cpu_us_per_request", {}).get("bare-route")
    cached_cpu = None if cached is None else cached.get("cpu_us_per_request", {}).get("bench-cache")

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 4)

    return {
        "cached_over_bare_throughput": div(cached_rps, bare_rps),
        "uncached_over_bare_throughput": div(uncached_rps, bare_rps),
        "cached_over_bare_p50": div(cached_p50, bare_p50),
        "cached_over_bare_cpu": div(cached_cpu, bare_cpu),
        "bare_route_cpu_us": bare_cpu, "cached_lookup_cpu_us": cached_cpu,
        "uncached_extra_p50_in_zmq_roundtrips": div(None if uncached_p50 is None or bare_p50 is None
                                                    else uncached_p50 - bare_p50, zmq_p50),
        "bare_route_p50_ms": bare_p50, "cached_lookup_p50_ms": cached_p50, "zmq_roundtrip_p50_ms": zmq_p50,
        "bare_route_rps": bare_rps, "cached_lookup_rps": cached_rps, "uncached_lookup_rps": uncached_rps,
    }


def trading_phase(sweep: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The phase the trade targets are read from: cache on, the highest p with trades."""
    trading = [ph for ph in sweep if ph["cache"] and "trade" in ph["kinds"]]
    return max(trading, key=lambda ph: ph["p"]) if trading else None


def cpu_ms_per_iteration(phase: dict[str, Any]) -> dict[str, float]:
    """CPU time each process spent per iteration of a phase (a lookup, maybe
    a trade, and the trade's read-back at the end), in ms."""
    iterations = phase["clients"] * phase["iterations"]
    return {name: round(cores * phase["wall_s"] * 1000 / iterations, 3)
            for name, cores in phase["noise"].get("parties", {}).items()}


def baseline_ratios(rounds: list[dict[str, float | None]], sweep: list[dict[str, Any]],
                    capacity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summaries over rounds of :func:`round_ratios`, the trading phase's
    figures, and each target with whether it was met.

    :param sweep: the sweep's phase documents (the trade figures come from them).
    :param capacity: :func:`capacity_summary` of the open loop, if it ran.
    """
    keys = rounds[0].keys() if rounds else ()
    out: dict[str, Any] = {key: spread([r[key] for r in rounds]) for key in keys}
    out["trade_p50_ms"] = spread([_kind(ph, "trade", "p50_ms") for ph in sweep])
    phase = trading_phase(sweep)
    bare_p50 = out.get("bare_route_p50_ms", {}).get("median")
    bare_rps = out.get("bare_route_rps", {}).get("median")
    cached_p50 = out.get("cached_lookup_p50_ms", {}).get("median")
    trade = {} if phase is None else {
        "phase": phase["label"], "trade_p50_ms": _kind(phase, "trade", "p50_ms"),
        "trades_per_s": _kind(phase, "trade", "throughput_rps"), "order_p50_ms": _kind(phase, "order", "p50_ms"),
        "cpu_ms_per_iteration": cpu_ms_per_iteration(phase),
    }
    if trade:
        trade["server_cpu_ms_per_iteration"] = round(sum(
            v for k, v in trade["cpu_ms_per_iteration"].items() if k not in NOT_BAZAAR), 3)
    out["trading"] = trade

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 3)

    def verdict(value: float | None, ok: bool) -> str:
        return "no data" if value is None else ("met" if ok else "not met")

    def at_most(value: float | None, target: float) -> dict[str, Any]:
        return {"target": f"<= {target}", "value": value, "verdict": verdict(value, value is not None and value <= target)}

    def at_least(value: float | None, target: float) -> dict[str, Any]:
        return {"target": f">= {target}", "value": value, "verdict": verdict(value, value is not None and value >= target)}

    out["targets"] = {
        "cached lookup req/s / bare route req/s": at_least(
            out.get("cached_over_bare_throughput", {}).get("median"), TARGET_CACHED_THROUGHPUT_RATIO),
        "trade p50 / bare route p50 (several clients)": at_most(
            div(trade.get("trade_p50_ms"), bare_p50), TARGET_TRADE_OVER_BARE_P50),
        "trades/s / bare route req/s (several clients)": at_least(
            div(trade.get("trades_per_s"), bare_rps), TARGET_TRADES_OVER_BARE_RPS),
        "server CPU per iteration, ms (every Bazaar process)": at_most(
            trade.get("server_cpu_ms_per_iteration"), TARGET_SERVER_CPU_MS_PER_ITERATION),
        "trade p50 / cached lookup p50 (one client)": at_most(
            div(trade.get("trade_p50_ms"), cached_p50), TARGET_TRADE_OVER_CACHED_P50),
        "order read p50 / cached lookup p50 (one client)": at_most(
            div(trade.get("order_p50_ms"), cached_p50), TARGET_ORDER_OVER_CACHED_P50),
        "frontend CPU per cached lookup / bare route's per request": at_most(
            out.get("cached_over_bare_cpu", {}).get("median"), TARGET_CACHED_OVER_BARE_CPU),
    }
    if capacity is not None:
        for label, kind, target in (("cached lookup", "cached lookup", TARGET_CACHED_OVER_BARE_CAPACITY),
                                    ("trades", "trade", TARGET_TRADES_OVER_BARE_CAPACITY)):
            k = capacity["kinds"].get(kind) or {}
            row = at_least(k.get("over_bare"), target)
            meaning = k.get("over_bare_meaning")
            if meaning in ("at least", "at most", "unknown"):
                # A capacity that passed the sweep's highest rate is only a lower bound: so is the ratio.
                row["verdict"] = {"at least": "met (at least)" if row["verdict"] == "met" else "unknown (higher rate needed)",
                                  "at most": "not met (at most)" if row["verdict"] == "not met" else "unknown (higher rate needed)",
                                  "unknown": "unknown (higher rate needed)"}[meaning]
            out["targets"][f"open-loop capacity at p99 < {capacity['bound_ms']:g} ms: {label} / bare route"] = row
    return out


# --- the open loop ----------------------------------------------------------------


def open_figures(phase: dict[str, Any]) -> dict[str, Any]:
    """The figures of an open-loop phase's one request kind."""
    return phase["kinds"].get(phase["request_kind"], {})


def capacity_summary(phases: list[dict[str, Any]], rates: tuple[float, ...], bound_ms: float) -> dict[str, Any]:
    """Each open-loop kind's points (one per rate it was offered) and capacity,
    and its capacity over the bare route's (:func:`client.openloop.capacity`).

    :param phases: the open loop's phase documents.
    :param rates: the rates of the sweep (a kind that failed twice in a row is not offered the higher ones).
    """
    labels = list(dict.fromkeys(ph["kind_label"] for ph in phases))
    kinds: dict[str, Any] = {}
    caps: dict[str, openloop.Capacity] = {}
    for label in labels:
        points = []
        for ph in sorted((ph for ph in phases if ph["kind_label"] == label), key=lambda ph: ph["offered_rps"]):
            f = open_figures(ph)
            points.append({"rate_rps": ph["offered_rps"], "p50_ms": f.get("p50_ms"), "p90_ms": f.get("p90_ms"),
                           "p99_ms": f.get("p99_ms"), "p999_ms": f.get("p999_ms"), "max_ms": f.get("max_ms"),
                           "errors": f.get("errors", 0), "refused": f.get("refused", 0),
                           "answered_rps": f.get("throughput_rps"), "passed": ph["passed"]})
        cap = openloop.capacity([openloop.RatePoint(p["rate_rps"], p["p99_ms"], p["errors"]) for p in points],
                                bound_ms)
        caps[label] = cap
        kinds[label] = {"points": points, "capacity_rps": cap.rate_rps, "censored": cap.censored,
                        "first_failure_rps": cap.first_failure_rps}
    base = caps.get("bare route")
    for label, k in kinds.items():
        ratio, meaning = openloop.capacity_ratio(caps[label], base) if base is not None else (None, "no data")
        k["over_bare"], k["over_bare_meaning"] = ratio, meaning
    return {"bound_ms": bound_ms, "rates_rps": list(rates), "kinds": kinds}


# --- terminal tables --------------------------------------------------------------


def sweep_table(phases: list[dict[str, Any]]) -> Table:
    """One row per phase and request kind of the p sweep."""
    table = Table(title="Bazaar: latency (ms) and throughput per request kind, cache on and off")
    for col in ("cache", "p", "kind", "count", "failed", "p50", "p90", "p99", "max", "req/s", "hit rate",
                "other cores"):
        table.add_column(col, justify="left" if col in ("cache", "kind") else "right")
    for ph in phases:
        first = True
        for kind, s in ph["kinds"].items():
            hit = (ph.get("cache_stats") or {}).get("hit_rate")
            table.add_row("on" if ph["cache"] else "off", f"{ph['p']:.1f}" if first else "", kind,
                          str(s["count"]), str(s["failed"]), _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]),
                          _ms(s["max_ms"]), _num(s["throughput_rps"], 0),
                          _num(hit, 3) if first and hit is not None else "",
                          _num(ph["noise"].get("other_cores")) if first else "")
            first = False
    return table


def baseline_table(phases: list[dict[str, Any]]) -> Table:
    """One row per baseline phase (p = 0: lookups, or bare round trips)."""
    table = Table(title="Baseline rounds (p = 0, same clients and count), latency in ms")
    for col in ("round", "target", "count", "failed", "p50", "p90", "p99", "max", "req/s", "other cores"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for ph in phases:
        for _kind_name, s in ph["kinds"].items():
            table.add_row(str(ph["round"]), ph["label"], str(s["count"]), str(s["failed"]), _ms(s["p50_ms"]),
                          _ms(s["p90_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]), _num(s["throughput_rps"], 0),
                          _num(ph["noise"].get("other_cores")))
    return table


def open_table(phases: list[dict[str, Any]], capacity: dict[str, Any]) -> Table:
    """One row per open-loop phase: a kind at an offered rate, latency from due time."""
    table = Table(title=f"Open loop: latency (ms) from each request's due time; pass = p99 < "
                        f"{capacity['bound_ms']:g} ms and no errors")
    for col in ("kind", "offered/s", "sent", "errors", "refused", "p50", "p90", "p99", "p99.9", "max",
                "answered/s", "conns", "send lag p99", "verdict"):
        table.add_column(col, justify="left" if col in ("kind", "verdict") else "right")
    for ph in sorted(phases, key=lambda ph: (ph["kind_label"], ph["offered_rps"])):
        s = open_figures(ph)
        table.add_row(ph["kind_label"], f"{ph['offered_rps']:g}", str(s.get("count", 0)), str(s.get("errors", 0)),
                      str(s.get("refused", 0)), _ms(s.get("p50_ms")), _ms(s.get("p90_ms")), _ms(s.get("p99_ms")),
                      _ms(s.get("p999_ms")), _ms(s.get("max_ms")), _num(s.get("throughput_rps"), 0),
                      str(ph["connections"]), _ms(ph["send_lag"].get("p99_ms")), "pass" if ph["passed"] else "FAIL")
    return table


def capacity_text(k: dict[str, Any]) -> str:
    """A kind's capacity in words: ``800/s``, ``>= 1600/s`` or ``none``."""
    if k["capacity_rps"] is None:
        return "none (failed at every rate)"
    return f"{'>= ' if k['censored'] else ''}{k['capacity_rps']:g}/s"


def capacity_table(capacity: dict[str, Any]) -> Table:
    """Each kind's capacity and its ratio to the bare route's."""
    table = Table(title=f"Capacity: the highest offered rate with p99 < {capacity['bound_ms']:g} ms and no errors")
    for col in ("kind", "capacity", "first failing rate", "/ bare route"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for label, k in capacity["kinds"].items():
        ratio = "-" if k["over_bare"] is None else f"{k['over_bare']:.3f} ({k['over_bare_meaning']})"
        table.add_row(label, capacity_text(k), "-" if k["first_failure_rps"] is None else f"{k['first_failure_rps']:g}/s",
                      ratio)
    return table


def ratio_table(ratios: dict[str, Any]) -> Table:
    """The targets, each with its figure from this run and a verdict."""
    trading = ratios.get("trading") or {}
    title = "Against the targets" + (f" (trade figures from phase '{trading['phase']}')" if trading else "")
    table = Table(title=title)
    for col in ("figure", "target", "this run", "verdict"):
        table.add_column(col, justify="left" if col in ("figure", "verdict") else "right")
    for label, t in ratios["targets"].items():
        table.add_row(label, t["target"], _num(t["value"], 3), t["verdict"])
    for label, key in (("bare route p50, ms", "bare_route_p50_ms"), ("bare route req/s", "bare_route_rps"),
                       ("bare ZeroMQ round trip p50, ms", "zmq_roundtrip_p50_ms"),
                       ("(uncached p50 - bare route p50) / bare ZeroMQ round trip p50",
                        "uncached_extra_p50_in_zmq_roundtrips"),
                       ("cached lookup p50 / bare route p50", "cached_over_bare_p50"),
                       ("bare route CPU per request, us", "bare_route_cpu_us"),
                       ("frontend CPU per cached lookup, us", "cached_lookup_cpu_us")):
        s = ratios.get(key, {})
        if s.get("median") is None:
            continue
        span = "" if s.get("min") is None or s.get("n", 1) < 2 else f" ({s['min']:.3g}..{s['max']:.3g})"
        table.add_row(label, "", _num(s.get("median"), 3) + span, "")
    for name, ms in sorted((trading.get("cpu_ms_per_iteration") or {}).items(), key=lambda kv: -kv[1]):
        table.add_row(f"CPU per iteration, ms: {name}", "", _num(ms, 3), "")
    return table


# --- files ------------------------------------------------------------------------


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def csv_rows(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per phase and request kind, :data:`CSV_FIELDS`."""
    rows = []
    for ph in phases:
        for kind, s in ph["kinds"].items():
            rows.append({
                "group": ph["group"], "round": ph.get("round") or "", "phase": ph["label"], "target": ph["target"],
                "cache": "" if ph["cache"] is None else ("on" if ph["cache"] else "off"), "p": ph["p"],
                "offered_rps": ph.get("offered_rps", ""),
                "kind": kind, "count": s["count"], "ok": s["ok"], "failed": s["failed"], "refused": s["refused"],
                "errors": s["errors"], "p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"], "p99_ms": s["p99_ms"],
                "p999_ms": s["p999_ms"], "max_ms": s["max_ms"],
                "mean_ms": s["mean_ms"], "throughput_rps": s["throughput_rps"], "kind_wall_s": s["wall_s"],
                "phase_wall_s": ph["wall_s"], "busy_cores": ph["noise"].get("busy_cores"),
                "client_cores": ph["noise"].get("client_cores"), "server_cores": ph["noise"].get("server_cores"),
                "other_cores": ph["noise"].get("other_cores"),
                "cache_hit_rate": (ph.get("cache_stats") or {}).get("hit_rate", ""),
                "mismatches": ph.get("verification", {}).get("mismatches", ""),
            })
    return rows


def write_csv(path: Path, phases: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(phases))


# --- markdown ---------------------------------------------------------------------


def _load(values) -> str:
    return "-" if values is None else " ".join(f"{v:.2f}" for v in values)


def _md_row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_summary(doc: dict[str, Any]) -> str:
    """The run's tables in Markdown (``summary.md``), ready for docs/PERFORMANCE.md."""
    meta, phases = doc["meta"], doc["phases"]
    lines = [f"Command: `{meta['command']}` (commit {meta['commit']}, {meta['started']}, {meta['wall_s']} s).",
             f"Client: {meta['client']}; {meta['clients']} clients x {meta['iterations']} iterations per phase; "
             f"frontend: {meta['frontend_server']}; caching frontend capacity {meta['cache_size']}.",
             f"Machine: {meta['cpus']} CPUs; load average {_load(meta['loadavg_start'])} at the start, "
             f"{_load(meta['loadavg_end'])} at the end; other tenants {meta['other_tenant_cores']['median']} cores "
             f"(median over phases), {meta['other_tenant_cores']['max']} at most.", ""]
    baseline = [ph for ph in phases if ph["group"] == "baseline"]
    if baseline:
        lines += ["| round | target | count | p50 ms | p90 ms | p99 ms | max ms | req/s | server CPU us/req | "
                  "catalog CPU us/req | other cores |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for ph in baseline:
            for s in ph["kinds"].values():
                server = {"bare-route": "bare-route", "zmq": "zmq-echo"}.get(
                    ph["target"], "bench-cache" if ph["cache"] else "bench-nocache")
                lines.append(_md_row((ph["round"], ph["label"], s["count"], _ms(s["p50_ms"]), _ms(s["p90_ms"]),
                                      _ms(s["p99_ms"]), _ms(s["max_ms"]), _num(s["throughput_rps"], 0),
                                      ph.get("cpu_us_per_request", {}).get(server, "-"),
                                      ph.get("cpu_us_per_request", {}).get("catalog", "-"),
                                      _num(ph["noise"].get("other_cores")))))
        lines.append("")
        ratios = doc["ratios"]
        trading = ratios.get("trading") or {}
        lines += [f"Against the targets (trade figures from phase '{trading.get('phase', '-')}'):", "",
                  "| figure | target | this run | verdict |", "|---|---|---|---|"]
        for label, t in ratios["targets"].items():
            lines.append(_md_row((label, t["target"], _num(t["value"], 3), t["verdict"])))
        cpu = trading.get("cpu_ms_per_iteration") or {}
        if cpu:
            lines += ["", "| process | CPU ms per iteration |", "|---|---|"]
            lines += [_md_row((name, _num(ms, 3))) for name, ms in sorted(cpu.items(), key=lambda kv: -kv[1])]
        lines.append("")
    elif doc["ratios"].get("targets"):
        ratios = doc["ratios"]
        lines += ["Against the targets:", "", "| figure | target | this run | verdict |", "|---|---|---|---|"]
        for label, t in ratios["targets"].items():
            if t["value"] is not None:
                lines.append(_md_row((label, t["target"], _num(t["value"], 3), t["verdict"])))
        lines.append("")
    capacity = doc.get("capacity")
    if capacity:
        lines += _open_markdown([ph for ph in phases if ph["group"] == "open"], capacity)
    sweep = [ph for ph in phases if ph["group"] == "sweep"]
    if not sweep:
        return "\n".join(lines) + "\n"
    lines += ["| cache | p | kind | count | failed | p50 ms | p90 ms | p99 ms | max ms | req/s | hit rate | "
              "other cores |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ph in sweep:
        for kind, s in ph["kinds"].items():
            hit = (ph.get("cache_stats") or {}).get("hit_rate") if kind == "lookup" else None
            lines.append(_md_row(("on" if ph["cache"] else "off", f"{ph['p']:g}", kind, s["count"], s["failed"],
                                  _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]),
                                  _num(s["throughput_rps"], 0), "-" if hit is None else f"{hit:.3f}",
                                  _num(ph["noise"].get("other_cores")))))
    return "\n".join(lines) + "\n"


def _open_markdown(phases: list[dict[str, Any]], capacity: dict[str, Any]) -> list[str]:
    bound = capacity["bound_ms"]
    lines = [f"Open loop: latency from each request's due time; a rate passes with p99 < {bound:g} ms and no errors.",
             "", "| kind | capacity | first failing rate | / bare route |", "|---|---|---|---|"]
    for label, k in capacity["kinds"].items():
        ratio = "-" if k["over_bare"] is None else f"{k['over_bare']:.3f} ({k['over_bare_meaning']})"
        lines.append(_md_row((label, capacity_text(k),
                              "-" if k["first_failure_rps"] is None else f"{k['first_failure_rps']:g}/s", ratio)))
    lines += ["", "| kind | offered/s | sent | errors | refused | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | "
                  "answered/s | connections | server CPU us/req | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ph in sorted(phases, key=lambda ph: (ph["kind_label"], ph["offered_rps"])):
        s = open_figures(ph)
        server = SERVER_OF.get(ph["target"], "bench-cache")
        lines.append(_md_row((ph["kind_label"], f"{ph['offered_rps']:g}", s.get("count", 0), s.get("errors", 0),
                              s.get("refused", 0), _ms(s.get("p50_ms")), _ms(s.get("p90_ms")), _ms(s.get("p99_ms")),
                              _ms(s.get("p999_ms")), _ms(s.get("max_ms")), _num(s.get("throughput_rps"), 0),
                              ph["connections"], ph.get("cpu_us_per_request", {}).get(server, "-"),
                              "pass" if ph["passed"] else "FAIL")))
    lines.append("")
    return lines
