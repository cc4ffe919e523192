"""Latency recording and the arithmetic of the reports (no I/O).

A :class:`Recorder` keeps, per request kind, the latency of every answered
request, the outcome of every request, and the span of time the kind was
being sent; :func:`summarize` turns that into percentiles and throughput.
Percentiles are nearest-rank on the sorted sample, so
``p50 <= p90 <= p99 <= max`` always holds and every figure is a latency that
was actually observed.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

# The request kinds a session sends: stock lookups, trades, order queries
# (the benchmark adds ``roundtrip``, its bare ZeroMQ baseline).
KINDS = ("lookup", "trade", "order")
# The percentiles every summary reports.
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


def outcome_of(status: int, message: str) -> str:
    """A short name for a request's outcome: ``ok``, ``no answer`` or ``HTTP 403 Not enough stock``."""
    if status == 200:
        return "ok"
    if status == 0:
        return "no answer"
    short = message if 0 < len(message) <= 40 else ""
    return f"HTTP {status} {short}".rstrip()


class Recorder:
    """What one client saw, per kind: latencies (seconds), outcomes and span.

    Spans are in ``time.monotonic()`` seconds, one clock for every process on
    the machine (Linux ``CLOCK_MONOTONIC``), so the spans of several worker
    processes merge into one.
    """

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {k: [] for k in KINDS}
        self.outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.spans: dict[str, list[float]] = {}

    def add(self, kind: str, status: int, message: str, elapsed_s: float, started: float) -> None:
        """Record one request of ``kind`` sent at ``started`` (monotonic seconds)."""
        if status != 0:
            self.latencies.setdefault(kind, []).append(elapsed_s)
        self.outcomes.setdefault(kind, Counter())[outcome_of(status, message)] += 1
        span = self.spans.get(kind)
        end = started + elapsed_s
        if span is None:
            self.spans[kind] = [started, end]
        else:
            span[0] = min(span[0], started)
            span[1] = max(span[1], end)

    def snapshot(self) -> dict[str, Any]:
        """Plain data (picklable, JSON-able) for :func:`merge`."""
        return {
            "latencies": {k: list(v) for k, v in self.latencies.items()},
            "outcomes": {k: dict(v) for k, v in self.outcomes.items()},
            "spans": {k: list(v) for k, v in self.spans.items()},
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge several clients' :meth:`Recorder.snapshot` into one."""
    out: dict[str, Any] = {"latencies": {k: [] for k in KINDS}, "outcomes": {k: Counter() for k in KINDS},
                           "spans": {}}
    for snap in snapshots:
        for kind, values in snap["latencies"].items():
            out["latencies"].setdefault(kind, []).extend(values)
        for kind, counts in snap["outcomes"].items():
            out["outcomes"].setdefault(kind, Counter()).update(counts)
        for kind, (start, end) in snap["spans"].items():
            have = out["spans"].get(kind)
            out["spans"][kind] = [start, end] if have is None else [min(have[0], start), max(have[1], end)]
    out["outcomes"] = {k: dict(v) for k, v in out["outcomes"].items()}
    return out


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1).

    :raises ValueError: on an empty sequence.
    """
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(latencies_s: Sequence[float], outcomes: dict[str, int], span: Sequence[float] | None) -> dict[str, Any]:
    """Figures for one kind: counts, latency percentiles in ms, throughput.

    :param latencies_s: latency of every answered request, in seconds.
    :param outcomes: requests by outcome (``ok`` and the failures).
    :param span: ``[first sent, last answered]`` in seconds, or None.
    :returns: ``count``, ``ok``, ``failed``, ``failures``, ``answered``,
        ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``, ``mean_ms`` (None when
        nothing was answered), ``wall_s`` and ``throughput_rps`` (answered
        requests per second of the span).
    """
    count = sum(outcomes.values())
    ok = outcomes.get("ok", 0)
    failures = {name: n for name, n in sorted(outcomes.items()) if name != "ok"}
    ordered = sorted(latencies_s)
    wall = (span[1] - span[0]) if span else 0.0
    doc: dict[str, Any] = {"count": count, "ok": ok, "failed": count - ok, "failures": failures,
                           "answered": len(ordered)}
    for label, q in PERCENTILES:
        doc[f"{label}_ms"] = round(percentile(ordered, q) * 1000, 4) if ordered else None
    doc["max_ms"] = round(ordered[-1] * 1000, 4) if ordered else None
    doc["mean_ms"] = round(statistics.fmean(ordered) * 1000, 4) if ordered else None
    doc["wall_s"] = round(wall, 4)
    doc["throughput_rps"] = round(len(ordered) / wall, 2) if wall > 0 else None
    return doc


def summarize_all(merged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` for every kind that was sent at least once."""
    return {kind: summarize(merged["latencies"].get(kind, []), counts, merged["spans"].get(kind))
            for kind, counts in merged["outcomes"].items() if counts}


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, min and max of the values that are not None (None if none are)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(present), 4), "min": round(min(present), 4),
            "max": round(max(present), 4), "n": len(present)}
