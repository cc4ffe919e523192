"""Per-second rates from counters that nodes report in their heartbeats.

A node's heartbeat carries running totals (trades received, lookups served,
the log index the catalog has applied). :class:`Rate` keeps the samples of one such
counter over a sliding window and answers "how fast did it rise lately". Pure:
it reads no clock, every call takes ``now`` (seconds, monotonic).

A counter that goes down (the node restarted and counts from zero again) or
whose owner changed incarnation starts a new series instead of producing a
negative rate.
"""

from __future__ import annotations

from collections import deque

# How far back a rate looks. Long enough to smooth the 100 ms heartbeat
# cadence, short enough that a stop in traffic shows within two seconds.
RATE_WINDOW_S = 2.0


class Rate:
    """The rise per second of one counter over the last ``window_s``.

    :param window_s: the span of samples kept; must be positive.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float, reset: bool = False) -> None:
        """Record the counter's ``value`` at ``now``.

        :param reset: start a new series (the counter's owner restarted).
        """
        if reset or (self._samples and value < self._samples[-1][1]):
            self._samples.clear()
        self._samples.append((now, value))
        # Keep one sample at or before the window's start, as the base.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def per_s(self, now: float) -> float | None:
        """The rate, or None when it is unknown (fewer than two samples, or the
        newest is older than the window: the counter's owner went quiet)."""
        if len(self._samples) < 2:
            return None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if now - t1 > self.window_s or t1 <= t0:
            return None
        return (v1 - v0) / (t1 - t0)

    def last(self) -> float | None:
        """The newest value recorded, if any."""
        return self._samples[-1][1] if self._samples else None


class EventRate:
    """Counts events as they happen (messages seen on the bus) and gives
    their rate: a :class:`Rate` over its own running total."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.total = 0
        self._rate = Rate(window_s)
        self._started = False

    def add(self, now: float, count: int = 1) -> None:
        if not self._started:
            self._rate.add(now, 0)
            self._started = True
        self.total += count
        self._rate.add(now, self.total)

    def per_s(self, now: float) -> float | None:
        if not self._started:
            return None
        self._rate.add(now, self.total)  # a quiet spell brings the rate down
        return self._rate.per_s(now)
