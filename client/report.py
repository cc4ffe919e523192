"""What the session and the benchmark print and write.

* :func:`session_summary`: the session's few lines (counts, failures by
  kind, latency p50/p99, the verification);
* :func:`baseline_ratios`: the benchmark's ratios against its baselines,
  each computed within one round (measurements taken back to back) and then
  summarized over the rounds, which is what keeps them steady on a noisy
  machine;
* :func:`sweep_table`, :func:`baseline_table`, :func:`ratio_table`: rich
  tables for the terminal;
* :func:`write_json`, :func:`write_csv`: the raw figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from .stats import spread

# The targets the benchmark reports against (it does not assert them).
TARGET_CACHED_THROUGHPUT_RATIO = 0.85   # cached lookups / bare route, requests per second
TARGET_UNCACHED_EXTRA_ROUNDTRIPS = 2.0  # (uncached p50 - bare route p50) / bare ZeroMQ round trip p50
TARGET_TRADE_P50_MS = 5.0

CSV_FIELDS = ("group", "round", "phase", "target", "cache", "p", "kind", "count", "ok", "failed",
              "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "throughput_rps", "kind_wall_s",
              "phase_wall_s", "busy_cores", "client_cores", "server_cores", "other_cores", "cache_hit_rate",
              "mismatches")


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

    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 4)

    return {
        "cached_over_bare_throughput": div(cached_rps, bare_rps),
        "uncached_over_bare_throughput": div(uncached_rps, bare_rps),
        "cached_over_bare_p50": div(cached_p50, bare_p50),
        "uncached_extra_p50_in_zmq_roundtrips": div(None if uncached_p50 is None or bare_p50 is None
                                                    else uncached_p50 - bare_p50, zmq_p50),
        "bare_route_p50_ms": bare_p50, "zmq_roundtrip_p50_ms": zmq_p50,
        "bare_route_rps": bare_rps, "cached_lookup_rps": cached_rps, "uncached_lookup_rps": uncached_rps,
    }


def baseline_ratios(rounds: list[dict[str, float | None]], sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """Summaries over rounds of :func:`round_ratios`, the trades' p50, and
    each target with whether the median met it.

    :param sweep: the sweep's phase documents (the trades' p50 comes from them).
    """
    keys = rounds[0].keys() if rounds else ()
    out: dict[str, Any] = {key: spread([r[key] for r in rounds]) for key in keys}
    trade_p50 = [_kind(ph, "trade", "p50_ms") for ph in sweep]
    out["trade_p50_ms"] = spread(trade_p50)
    out["trade_p50_ms_cache_on"] = spread([_kind(ph, "trade", "p50_ms") for ph in sweep if ph["cache"]])
    out["trade_p50_ms_cache_off"] = spread([_kind(ph, "trade", "p50_ms") for ph in sweep if not ph["cache"]])
    zmq_p50 = out.get("zmq_roundtrip_p50_ms", {}).get("median")
    median_trade = out["trade_p50_ms"]["median"]
    out["trade_p50_in_zmq_roundtrips"] = (None if median_trade is None or not zmq_p50
                                          else round(median_trade / zmq_p50, 2))

    def verdict(value: float | None, ok: bool) -> str:
        return "no data" if value is None else ("met" if ok else "not met")

    cached = out.get("cached_over_bare_throughput", {}).get("median")
    extra = out.get("uncached_extra_p50_in_zmq_roundtrips", {}).get("median")
    out["targets"] = {
        "cached_lookup_throughput_over_bare_route": {
            "target": f">= {TARGET_CACHED_THROUGHPUT_RATIO}", "median": cached,
            "verdict": verdict(cached, cached is not None and cached >= TARGET_CACHED_THROUGHPUT_RATIO)},
        "uncached_lookup_p50_minus_bare_route_p50_in_zmq_roundtrips": {
            "target": f"<= {TARGET_UNCACHED_EXTRA_ROUNDTRIPS}", "median": extra,
            "verdict": verdict(extra, extra is not None and extra <= TARGET_UNCACHED_EXTRA_ROUNDTRIPS)},
        "trade_p50_ms": {
            "target": f"< {TARGET_TRADE_P50_MS}", "median": median_trade,
            "verdict": verdict(median_trade, median_trade is not None and median_trade < TARGET_TRADE_P50_MS)},
    }
    return out


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


def ratio_table(ratios: dict[str, Any]) -> Table:
    """The targets, each with the median over rounds and its spread."""
    table = Table(title="Against the targets (median over rounds; min..max)")
    for col in ("figure", "target", "median", "min..max", "verdict"):
        table.add_column(col, justify="left" if col in ("figure", "verdict") else "right")
    rows = (
        ("cached lookup req/s / bare route req/s", "cached_over_bare_throughput",
         "cached_lookup_throughput_over_bare_route"),
        ("(uncached p50 - bare route p50) / bare ZeroMQ round trip p50", "uncached_extra_p50_in_zmq_roundtrips",
         "uncached_lookup_p50_minus_bare_route_p50_in_zmq_roundtrips"),
        ("trade p50, ms (over the sweep's phases)", "trade_p50_ms", "trade_p50_ms"),
    )
    for label, key, target in rows:
        s, t = ratios.get(key, {}), ratios["targets"][target]
        span = "-" if s.get("min") is None else f"{s['min']:.3g}..{s['max']:.3g}"
        table.add_row(label, t["target"], _num(s.get("median"), 3), span, t["verdict"])
    for label, key in (("bare route p50, ms", "bare_route_p50_ms"),
                       ("bare ZeroMQ round trip p50, ms", "zmq_roundtrip_p50_ms"),
                       ("uncached lookup req/s / bare route req/s", "uncached_over_bare_throughput"),
                       ("cached lookup p50 / bare route p50", "cached_over_bare_p50")):
        s = ratios.get(key, {})
        span = "-" if s.get("min") is None else f"{s['min']:.3g}..{s['max']:.3g}"
        table.add_row(label, "", _num(s.get("median"), 3), span, "")
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
                "kind": kind, "count": s["count"], "ok": s["ok"], "failed": s["failed"],
                "p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"],
                "mean_ms": s["mean_ms"], "throughput_rps": s["throughput_rps"], "kind_wall_s": s["wall_s"],
                "phase_wall_s": ph["wall_s"], "busy_cores": ph["noise"].get("busy_cores"),
                "client_cores": ph["noise"].get("client_cores"), "server_cores": ph["noise"].get("server_cores"),
                "other_cores": ph["noise"].get("other_cores"),
                "cache_hit_rate": (ph.get("cache_stats") or {}).get("hit_rate", ""),
                "mismatches": ph["verification"]["mismatches"],
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
        lines += ["| figure | target | median | min..max over rounds | verdict |", "|---|---|---|---|---|"]
        for label, key, target in (
                ("cached lookup req/s / bare route req/s", "cached_over_bare_throughput",
                 "cached_lookup_throughput_over_bare_route"),
                ("(uncached lookup p50 - bare route p50) / bare ZeroMQ round trip p50",
                 "uncached_extra_p50_in_zmq_roundtrips", "uncached_lookup_p50_minus_bare_route_p50_in_zmq_roundtrips"),
                ("trade p50, ms (sweep phases)", "trade_p50_ms", "trade_p50_ms")):
            s, t = ratios.get(key, {}), ratios["targets"][target]
            span = "-" if s.get("min") is None else f"{s['min']:.3g}..{s['max']:.3g}"
            lines.append(_md_row((label, t["target"], _num(s.get("median"), 3), span, t["verdict"])))
        lines.append("")
    lines += ["| cache | p | kind | count | failed | p50 ms | p90 ms | p99 ms | max ms | req/s | hit rate | "
              "other cores |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ph in (ph for ph in phases if ph["group"] == "sweep"):
        for kind, s in ph["kinds"].items():
            hit = (ph.get("cache_stats") or {}).get("hit_rate") if kind == "lookup" else None
            lines.append(_md_row(("on" if ph["cache"] else "off", f"{ph['p']:g}", kind, s["count"], s["failed"],
                                  _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]),
                                  _num(s["throughput_rps"], 0), "-" if hit is None else f"{hit:.3f}",
                                  _num(ph["noise"].get("other_cores")))))
    return "\n".join(lines) + "\n"
