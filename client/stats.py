"""Latency recording and the arithmetic of the reports (no I/O).

A :class:`Recorder` keeps, per request kind, an HdrHistogram of the latency
of every answered request (``hdrh``, the Python port of Gil Tene's
HdrHistogram), the outcome of every request, and the span of time the kind
was being sent; :func:`summarize` turns that into percentiles and
throughput.

Latencies are recorded in whole microseconds from :data:`LOWEST_US` to
:data:`HIGHEST_US` with :data:`SIGNIFICANT_FIGURES` significant figures: a
reported percentile is the top of the histogram bucket holding the
nearest-rank sample, at most 0.1% above it, so ``p50 <= p90 <= p99 <= p99.9
<= max`` always holds. Histograms of several processes merge exactly
(:func:`merge` adds their counts), which is what lets the benchmark's worker
processes, and an open loop's connection threads, report percentiles of
their union rather than an average of percentiles.

An outcome is ``ok`` (HTTP 200), an *expected refusal* (an answer the API
gives a well-formed request on purpose: :data:`REFUSALS`, a trade's 403 "Not
enough stock"), or an *error* (every other answer, and no answer at all).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

# The request kinds a session sends: stock lookups, trades, order queries
# (the benchmark adds ``roundtrip``, its bare ZeroMQ baseline).
KINDS = ("lookup", "trade", "order")
# The percentiles every summary reports: (key prefix, percent).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
# The histograms' range and precision: 1 us to 1 hour, 3 significant figures
# (a figure is at most 0.1% above the sample it stands for). Longer
# latencies are recorded as HIGHEST_US.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
# Answers that are the API's deliberate refusal of a well-formed request
# (kind -> HTTP statuses): not errors, counted on their own.
REFUSALS = {"trade": frozenset({403})}
# The outcome of an open-loop request that waited too long to be sent (:mod:`client.pacer`).
NOT_SENT = "not sent"


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (microseconds)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record_s(hist: HdrHistogram, seconds: float) -> None:
    """Record one latency given in seconds (clamped to the histogram's range)."""
    hist.record_value(min(HIGHEST_US, max(0, round(seconds * 1e6))))


def encode(hist: HdrHistogram) -> str:
    """The histogram as text (HdrHistogram's compressed base64 form), picklable and JSON-able."""
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    """A histogram from :func:`encode`'s text, with this module's range and precision."""
    hist = new_histogram()
    if text:
        hist.add(HdrHistogram.decode(text.encode("ascii")))
    return hist


def percentiles_ms(hist: HdrHistogram) -> dict[str, float | None]:
    """``p50_ms``, ``p90_ms``, ``p99_ms``, ``p999_ms`` and ``max_ms`` of a
    histogram of microseconds (None each when it is empty)."""
    empty = hist.get_total_count() == 0
    doc: dict[str, float | None] = {}
    for label, percent in PERCENTILES:
        doc[f"{label}_ms"] = None if empty else round(hist.get_value_at_percentile(percent) / 1000, 4)
    doc["max_ms"] = None if empty else round(hist.get_max_value() / 1000, 4)
    return doc


def outcome_of(status: int, message: str) -> str:
    """A short name for a request's outcome: ``ok``, ``no answer``, ``not
    sent`` or ``HTTP 403 Not enough stock``."""
    if status == 200:
        return "ok"
    if status == 0:
        return NOT_SENT if message == NOT_SENT else "no answer"
    short = message if 0 < len(message) <= 40 else ""
    return f"HTTP {status} {short}".rstrip()


def is_refusal(kind: str, status: int) -> bool:
    """True for an answer the API gives on purpose (:data:`REFUSALS`)."""
    return status in REFUSALS.get(kind, ())


class Recorder:
    """What one client saw, per kind: latencies, outcomes and span.

    Spans are in ``time.monotonic()`` seconds, one clock for every process on
    the machine (Linux ``CLOCK_MONOTONIC``), so the spans of several worker
    processes merge into one. Not thread-safe: one owner, or a lock.
    """

    def __init__(self) -> None:
        self.histograms: dict[str, HdrHistogram] = {}
        self.sums_s: Counter = Counter()       # kind -> sum of recorded latencies (an exact mean)
        self.outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
        self.refused: Counter = Counter()
        self.spans: dict[str, list[float]] = {}

    def add(self, kind: str, status: int, message: str, elapsed_s: float, started: float) -> None:
        """Record one request of ``kind`` that started at ``started`` (monotonic
        seconds) and was answered, or given up on, ``elapsed_s`` later.

        An open loop passes the time the request was *due* as ``started``, so
        ``elapsed_s`` includes any wait before it could be sent.
        """
        if status != 0:
            hist = self.histograms.get(kind)
            if hist is None:
                hist = self.histograms[kind] = new_histogram()
            record_s(hist, elapsed_s)
            self.sums_s[kind] += elapsed_s
        self.outcomes.setdefault(kind, Counter())[outcome_of(status, message)] += 1
        if is_refusal(kind, status):
            self.refused[kind] += 1
        span = self.spans.get(kind)
        end = started + elapsed_s
        if span is None:
            self.spans[kind] = [started, end]
        else:
            span[0] = min(span[0], started)
            span[1] = max(span[1], end)

    def snapshot(self) -> dict[str, Any]:
        """Plain data (picklable, JSON-able) for :func:`merge` and :func:`summarize_all`."""
        return {
            "histograms": {k: encode(h) for k, h in self.histograms.items()},
            "sums_s": dict(self.sums_s),
            "outcomes": {k: dict(v) for k, v in self.outcomes.items()},
            "refused": dict(self.refused),
            "spans": {k: list(v) for k, v in self.spans.items()},
        }


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge several clients' :meth:`Recorder.snapshot` into one (same shape)."""
    hists: dict[str, HdrHistogram] = {}
    sums: Counter = Counter()
    outcomes: dict[str, Counter] = {k: Counter() for k in KINDS}
    refused: Counter = Counter()
    spans: dict[str, list[float]] = {}
    for snap in snapshots:
        for kind, text in snap["histograms"].items():
            hist = hists.get(kind)
            if hist is None:
                hist = hists[kind] = new_histogram()
            hist.add(decode(text))
        sums.update(snap["sums_s"])
        for kind, counts in snap["outcomes"].items():
            outcomes.setdefault(kind, Counter()).update(counts)
        refused.update(snap["refused"])
        for kind, (start, end) in snap["spans"].items():
            have = spans.get(kind)
            spans[kind] = [start, end] if have is None else [min(have[0], start), max(have[1], end)]
    return {"histograms": {k: encode(h) for k, h in hists.items()}, "sums_s": dict(sums),
            "outcomes": {k: dict(v) for k, v in outcomes.items()}, "refused": dict(refused), "spans": spans}


def summarize(hist: HdrHistogram, sum_s: float, outcomes: dict[str, int], refused: int,
              span: Sequence[float] | None) -> dict[str, Any]:
    """Figures for one kind: counts, latency percentiles in ms, throughput.

    :param hist: latency of every answered request, in microseconds.
    :param sum_s: the sum of those latencies, in seconds (for the mean).
    :param outcomes: requests by outcome (``ok`` and the failures).
    :param refused: how many of the failures are expected refusals (:data:`REFUSALS`).
    :param span: ``[first sent, last answered]`` in seconds, or None.
    :returns: ``count``, ``ok``, ``failed`` (not ok), ``refused``, ``errors``
        (failed and not refused), ``failures`` (by outcome), ``answered``,
        ``p50_ms``, ``p90_ms``, ``p99_ms``, ``p999_ms``, ``max_ms``,
        ``mean_ms`` (None when nothing was answered), ``wall_s`` and
        ``throughput_rps`` (answered requests per second of the span).
    """
    count = sum(outcomes.values())
    ok = outcomes.get("ok", 0)
    failures = {name: n for name, n in sorted(outcomes.items()) if name != "ok"}
    answered = hist.get_total_count()
    wall = (span[1] - span[0]) if span else 0.0
    doc: dict[str, Any] = {"count": count, "ok": ok, "failed": count - ok, "refused": refused,
                           "errors": count - ok - refused, "failures": failures, "answered": answered}
    doc.update(percentiles_ms(hist))
    doc["mean_ms"] = round(sum_s / answered * 1000, 4) if answered else None
    doc["wall_s"] = round(wall, 4)
    doc["throughput_rps"] = round(answered / wall, 2) if wall > 0 else None
    return doc


def summarize_all(merged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` for every kind of a snapshot that was sent at least once."""
    return {kind: summarize(decode(merged["histograms"].get(kind, "")), merged["sums_s"].get(kind, 0.0), counts,
                            merged["refused"].get(kind, 0), merged["spans"].get(kind))
            for kind, counts in merged["outcomes"].items() if counts}


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, min and max of the values that are not None (None if none are)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(present), 4), "min": round(min(present), 4),
            "max": round(max(present), 4), "n": len(present)}
