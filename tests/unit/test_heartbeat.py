"""Ticker and Liveness (common/heartbeat.py) with a fake clock: every time is
passed in, nothing sleeps."""

from __future__ import annotations

import math

import pytest

from common.heartbeat import Liveness, Ticker

# --- Ticker -------------------------------------------------------------------------


def test_the_first_tick_is_due_at_once():
    ticker = Ticker(0.1, now=5.0)
    assert ticker.remaining(5.0) == 0.0
    assert ticker.due(5.0)
    assert not ticker.due(5.0)


def test_ticks_keep_a_steady_cadence():
    ticker = Ticker(0.25, now=0.0)  # binary fractions: exact arithmetic
    assert ticker.due(0.0)
    assert not ticker.due(0.24)
    assert ticker.remaining(0.125) == 0.125
    assert ticker.due(0.25)
    # A tick noticed a little late does not shift the schedule.
    assert ticker.due(0.625)
    assert ticker.next_at == 0.75
    assert not ticker.due(0.74)
    assert ticker.due(0.75)


def test_a_ticker_that_fell_behind_does_not_burst():
    ticker = Ticker(0.1, now=0.0)
    assert ticker.due(0.0)
    assert ticker.due(1.05)  # ten periods late: one tick, not ten
    assert not ticker.due(1.06)
    assert ticker.next_at == pytest.approx(1.15)
    assert ticker.remaining(1.06) == pytest.approx(0.09)


def test_remaining_is_never_negative():
    ticker = Ticker(0.1, now=0.0)
    ticker.due(0.0)
    assert ticker.remaining(10.0) == 0.0


def test_ticks_over_a_long_run_match_the_interval():
    ticker = Ticker(0.1, now=0.0)
    ticks = sum(ticker.due(i * 0.01) for i in range(1000))  # polled every 10 ms for 10 s
    assert 99 <= ticks <= 101


# --- Liveness -------------------------------------------------------------------------


def test_first_sighting_is_new_and_alive():
    live = Liveness(window_s=0.3)
    assert not live.is_alive("catalog", 0.0)
    assert live.age("catalog", 0.0) == math.inf
    assert live.incarnation("catalog") is None
    assert live.heard("catalog", 1.0, "inc-a") == "new"
    assert live.is_alive("catalog", 1.0)
    assert live.incarnation("catalog") == "inc-a"
    assert live.age("catalog", 1.25) == pytest.approx(0.25)


def test_further_traffic_changes_nothing_to_report():
    live = Liveness(0.3)
    live.heard("catalog", 0.0, "inc-a")
    assert live.heard("catalog", 0.1, "inc-a") is None
    assert live.heard("catalog", 0.2) is None  # traffic without an incarnation counts too
    assert live.incarnation("catalog") == "inc-a"
    assert live.age("catalog", 0.2) == 0.0


def test_silence_longer_than_the_window_is_death():
    live = Liveness(0.3)
    live.heard("catalog", 0.0)
    assert live.expire(0.3) == []          # exactly the window: still alive
    assert live.is_alive("catalog", 0.3)
    assert not live.is_alive("catalog", 0.31)  # is_alive judges by age, even before expire
    assert live.expire(0.31) == ["catalog"]
    assert live.expire(0.5) == []          # reported once
    assert not live.is_alive("catalog", 0.5)


def test_any_traffic_keeps_a_peer_alive():
    live = Liveness(0.3)
    live.heard("catalog", 0.0)
    for t in (0.25, 0.5, 0.75, 1.0):
        live.heard("catalog", t)
        assert live.expire(t + 0.29) == []
    assert live.is_alive("catalog", 1.29)


def test_a_dead_peer_that_speaks_is_back():
    live = Liveness(0.3)
    live.heard("order-1", 0.0, "a")
    live.expire(1.0)
    assert live.heard("order-1", 1.1, "a") == "back"
    assert live.is_alive("order-1", 1.1)
    assert live.heard("order-1", 1.2, "a") is None


def test_a_new_incarnation_is_a_restart():
    live = Liveness(0.3)
    live.heard("order-1", 0.0, "a")
    assert live.heard("order-1", 0.1, "b") == "restarted"
    assert live.incarnation("order-1") == "b"
    assert live.heard("order-1", 0.2, "b") is None


def test_a_dead_peer_back_with_a_new_incarnation_is_reported_as_back():
    live = Liveness(0.3)
    live.heard("order-1", 0.0, "a")
    live.expire(1.0)
    assert live.heard("order-1", 1.5, "b") == "back"
    assert live.incarnation("order-1") == "b"


def test_an_incarnation_learnt_late_is_not_a_restart():
    live = Liveness(0.3)
    live.heard("order-1", 0.0)  # traffic without an incarnation first
    assert live.heard("order-1", 0.1, "a") is None
    assert live.incarnation("order-1") == "a"


def test_mark_dead_at_once():
    live = Liveness(0.3)
    assert not live.mark_dead("broker")  # never heard of
    live.heard("broker", 0.0)
    assert live.mark_dead("broker")
    assert not live.mark_dead("broker")  # already dead
    assert not live.is_alive("broker", 0.0)
    assert live.expire(5.0) == []        # not reported a second time
    assert live.heard("broker", 0.1) == "back"


def test_time_never_runs_backwards_for_a_peer():
    live = Liveness(0.3)
    live.heard("catalog", 1.0)
    live.heard("catalog", 0.5)  # a message stamped earlier, handled late
    assert live.age("catalog", 1.0) == 0.0
    assert live.expire(1.25) == []


def test_peers_are_judged_separately():
    live = Liveness(0.3)
    live.heard("broker", 0.0)
    live.heard("catalog", 0.2)
    assert live.expire(0.4) == ["broker"]
    assert live.is_alive("catalog", 0.4)
    assert live.nodes() == ["broker", "catalog"]
