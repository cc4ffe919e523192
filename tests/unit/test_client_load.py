"""The benchmark's arithmetic without sockets: histograms, open-loop
schedules and sweeps, the capacity rule, the pacer's due-time latency, and
the reports built from them."""

from __future__ import annotations

import threading
import time

import pytest

from client import openloop, report
from client.pacer import Pacer, Planned
from client.stats import NOT_SENT, Recorder, merge, summarize_all


# --- histograms ---------------------------------------------------------------------


def test_percentiles_come_from_the_histogram_and_are_ordered():
    rec = Recorder()
    for ms in range(1, 1001):  # 1..1000 ms
        rec.add("lookup", 200, "", ms / 1000, 0.0)
    s = summarize_all(rec.snapshot())["lookup"]
    assert s["count"] == s["answered"] == 1000
    # 3 significant figures: each figure is within 0.1% above the nearest-rank sample
    for key, exact in (("p50_ms", 500), ("p90_ms", 900), ("p99_ms", 990), ("p999_ms", 999), ("max_ms", 1000)):
        assert exact <= s[key] <= exact * 1.001, (key, s[key])
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["p999_ms"] <= s["max_ms"]
    assert s["mean_ms"] == pytest.approx(500.5)


def test_merged_histograms_give_the_percentiles_of_the_union():
    fast, slow = Recorder(), Recorder()
    for _ in range(99):
        fast.add("trade", 200, "", 0.001, 0.0)
    slow.add("trade", 200, "", 2.0, 0.0)
    merged = summarize_all(merge([fast.snapshot(), slow.snapshot()]))["trade"]
    assert merged["count"] == 100
    assert merged["p99_ms"] == pytest.approx(1.0, rel=0.001)  # the 99th of 100 is still a fast one
    assert merged["max_ms"] == pytest.approx(2000, rel=0.001)


def test_a_refusal_is_counted_apart_from_errors():
    rec = Recorder()
    rec.add("trade", 200, "", 0.002, 0.0)
    rec.add("trade", 403, "Not enough stock", 0.002, 0.0)
    rec.add("trade", 503, "no leader", 0.002, 0.0)
    rec.add("trade", 0, "connection refused", 0.002, 0.0)
    s = summarize_all(rec.snapshot())["trade"]
    assert (s["count"], s["ok"], s["failed"], s["refused"], s["errors"]) == (4, 1, 3, 1, 2)
    assert s["answered"] == 3  # no answer has no latency


# --- schedules and sweeps ---------------------------------------------------------


def test_a_constant_schedule_is_evenly_spaced_and_bounded():
    assert openloop.schedule(4, 10, 100, "constant", 0) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    assert openloop.schedule(4, 10, 1.0, "constant", 0) == [0.0, 0.25, 0.5, 0.75]


def test_a_poisson_schedule_is_fixed_by_the_seed_and_has_the_rate():
    a = openloop.schedule(500, 5000, 1000, "poisson", 7)
    assert a == openloop.schedule(500, 5000, 1000, "poisson", 7)
    assert a != openloop.schedule(500, 5000, 1000, "poisson", 8)
    assert a == sorted(a) and a[0] == 0.0 and len(a) == 5000
    assert len(a) / a[-1] == pytest.approx(500, rel=0.05)
    gaps = [y - x for x, y in zip(a, a[1:])]
    assert max(gaps) > 3 / 500  # exponential gaps: some far above the mean, unlike a constant schedule


@pytest.mark.parametrize("rate, count, span, arrival", [
    (0, 10, 1, "poisson"), (-5, 10, 1, "poisson"), (float("inf"), 10, 1, "poisson"),
    (10, 0, 1, "poisson"), (10, 10, 0, "constant"), (10, 10, 1, "bursty"),
])
def test_a_schedule_refuses_nonsense(rate, count, span, arrival):
    with pytest.raises(ValueError):
        openloop.schedule(rate, count, span, arrival, 0)


def test_rates_parse_single_values_and_ranges():
    assert openloop.parse_rates(["400"]) == (400.0,)
    assert openloop.parse_rates(["100:1600:x2"]) == (100, 200, 400, 800, 1600)
    assert openloop.parse_rates(["100:500:+100", "250", "200"]) == (100, 200, 250, 300, 400, 500)
    assert openloop.parse_rates(["100:1000:x3"]) == (100, 300, 900)  # the stop need not be reached exactly


@pytest.mark.parametrize("tokens, says", [
    (["fast"], "not a rate"), (["0"], "positive"), (["-3"], "positive"), (["500:100:x2"], "below the start"),
    (["100:200:x1"], "above 1"), (["0:100:+10"], "start above 0"), (["1:1000:+1"], "more than 64 rates"), ([], "no rate"),
])
def test_rates_refuse_what_is_not_a_sweep(tokens, says):
    with pytest.raises(ValueError, match=says):
        openloop.parse_rates(tokens)


# --- capacity -----------------------------------------------------------------------


def points(*triples):
    return [openloop.RatePoint(rate, p99, errors) for rate, p99, errors in triples]


def test_capacity_is_the_highest_rate_under_the_bound_without_errors():
    cap = openloop.capacity(points((100, 3, 0), (200, 8, 0), (400, 70, 0), (800, 900, 0)), 50)
    assert cap == openloop.Capacity(200, False, 400)
    # an error disqualifies a rate whatever its p99
    assert openloop.capacity(points((100, 3, 0), (200, 4, 1)), 50) == openloop.Capacity(100, False, 200)
    # passing the top rate only gives a lower bound
    assert openloop.capacity(points((100, 3, 0), (200, 4, 0)), 50) == openloop.Capacity(200, True, None)
    assert openloop.capacity(points((100, 60, 0)), 50) == openloop.Capacity(None, False, 100)
    assert openloop.capacity(points((100, None, 0)), 50).rate_rps is None  # nothing answered


def test_a_sweep_stops_a_kind_after_two_failures_in_a_row():
    assert openloop.keep_going(points((100, 3, 0), (200, 90, 0)), 50)
    assert not openloop.keep_going(points((100, 3, 0), (200, 90, 0), (400, 95, 0)), 50)


def test_capacity_ratios_say_what_they_are():
    measured, censored = openloop.Capacity(200, False, 400), openloop.Capacity(800, True, None)
    assert openloop.capacity_ratio(measured, openloop.Capacity(400, False, 800)) == (0.5, "measured")
    assert openloop.capacity_ratio(censored, openloop.Capacity(400, False, 800)) == (2.0, "at least")
    assert openloop.capacity_ratio(measured, censored) == (0.25, "at most")
    assert openloop.capacity_ratio(measured, openloop.Capacity(None, False, 100)) == (None, "no data")


# --- the pacer ----------------------------------------------------------------------


class StallingConnection:
    """Answers at once, except the request with payload ``stall``, which takes ``stall_s``."""

    def __init__(self, stall_s: float, opened: list) -> None:
        self.stall_s = stall_s
        opened.append(self)

    def send(self, payload):
        if payload == "stall":
            time.sleep(self.stall_s)
        return 200, ""

    def close(self):
        pass


def test_latency_counts_from_the_due_time_so_a_stall_is_charged_to_every_request_it_delays():
    # One connection; the first request stalls 0.3 s; nine more fall due meanwhile, 10 ms apart.
    planned = [Planned(0.0, "lookup", "stall")] + [Planned(0.01 * i, "lookup", "quick") for i in range(1, 10)]
    opened: list = []
    pacer = Pacer(planned, lambda: StallingConnection(0.3, opened), max_connections=1)
    result = pacer.run(time.monotonic(), join_timeout_s=10)
    s = summarize_all(result.recorder.snapshot())["lookup"]
    assert len(opened) == 1 and result.sent == 10 and s["errors"] == 0
    # A closed loop would record one slow request and nine fast ones; from due time, the
    # request due at 90 ms waited about 210 ms, and the median one about 250 ms.
    assert s["p50_ms"] >= 200
    assert s["max_ms"] >= 290


def test_the_pacer_opens_connections_as_the_load_needs_them_up_to_its_limit():
    planned = [Planned(0.001 * i, "lookup", "stall") for i in range(8)]
    opened: list = []
    result = Pacer(planned, lambda: StallingConnection(0.1, opened), max_connections=4).run(
        time.monotonic(), join_timeout_s=10)
    assert result.connections == len(opened) == 4
    assert result.sent == 8


def test_a_request_that_cannot_be_sent_in_time_is_given_up_as_an_error():
    planned = [Planned(0.0, "trade", "stall"), Planned(0.001, "trade", "quick")]
    result = Pacer(planned, lambda: StallingConnection(0.2, []), max_connections=1, give_up_s=0.05).run(
        time.monotonic(), join_timeout_s=10)
    s = summarize_all(result.recorder.snapshot())["trade"]
    assert (result.sent, result.unsent) == (1, 1)
    assert s["failures"] == {NOT_SENT: 1} and s["errors"] == 1


def test_a_failing_connection_is_reported_not_swallowed():
    def broken():
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(RuntimeError, match="connection thread failed"):
        Pacer([Planned(0.0, "lookup", "x")], broken, max_connections=1).run(time.monotonic(), join_timeout_s=5)
    assert threading.active_count() < 50


# --- reports ------------------------------------------------------------------------


def open_phase(label, kind, rate, p99, errors=0, bound=50.0):
    figures = {"count": 100, "ok": 100 - errors, "failed": errors, "refused": 0, "errors": errors,
               "p50_ms": p99 / 3, "p90_ms": p99 / 2, "p99_ms": p99, "p999_ms": p99 * 1.2, "max_ms": p99 * 1.5,
               "throughput_rps": rate, "wall_s": 1.0, "answered": 100 - errors, "failures": {}, "mean_ms": 1.0}
    return {"group": "open", "label": f"{label} at {rate:g}/s", "kind_label": label, "request_kind": kind,
            "offered_rps": rate, "target": "bare-route" if label == "bare route" else "bazaar", "cache": True,
            "p": 1.0 if kind == "trade" else 0.0, "kinds": {kind: figures}, "connections": 3,
            "send_lag": {"p99_ms": 0.1}, "passed": errors == 0 and p99 < bound, "noise": {}, "wall_s": 1.0,
            "cpu_us_per_request": {"bench-cache": 300.0, "bare-route": 250.0}}


def test_the_capacity_summary_and_its_ratios_to_the_bare_route():
    phases = [open_phase("bare route", "lookup", 400, 5), open_phase("bare route", "lookup", 800, 12),
              open_phase("bare route", "lookup", 1600, 200),
              open_phase("cached lookup", "lookup", 400, 6), open_phase("cached lookup", "lookup", 800, 80),
              open_phase("trade", "trade", 400, 30, errors=2)]
    cap = report.capacity_summary(phases, (400, 800, 1600), 50.0)
    assert cap["kinds"]["bare route"]["capacity_rps"] == 800
    assert cap["kinds"]["cached lookup"]["over_bare"] == 0.5
    assert cap["kinds"]["trade"]["capacity_rps"] is None and cap["kinds"]["trade"]["over_bare"] == 0.0
    ratios = report.baseline_ratios([], [], cap)
    row = ratios["targets"]["open-loop capacity at p99 < 50 ms: cached lookup / bare route"]
    assert (row["value"], row["verdict"]) == (0.5, "not met")
    doc = {"meta": {"command": "x", "commit": "c", "started": "s", "wall_s": 1, "client": "http.client",
                    "clients": 2, "iterations": 100, "frontend_server": "pywsgi", "cache_size": 15, "cpus": 2,
                    "loadavg_start": None, "loadavg_end": None, "other_tenant_cores": {"median": 0, "max": 0}},
           "phases": phases, "ratios": ratios, "capacity": cap}
    md = report.markdown_summary(doc)
    assert "| cached lookup | 400/s | 800/s | 0.500 (measured) |" in md
    assert "| trade | none (failed at every rate) |" in md
    rows = report.csv_rows(phases)
    assert rows[0]["offered_rps"] == 400 and rows[0]["p999_ms"] == 6.0
