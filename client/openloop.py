"""The arithmetic of open-loop load (no I/O, no clock): arrival schedules,
the ``--rate`` sweep syntax, and the capacity rule.

*Open loop*: requests arrive at a fixed rate whether or not earlier ones have
been answered, as users' requests do; the schedule of arrival offsets is
drawn in advance (:func:`schedule`), so two runs with the same seed send at
the same offsets. Each request's latency is counted from the time it was
*due*, not from the time a connection got around to sending it (the
correction for *coordinated omission*: a client that waits for a slow answer
before sending the next request would otherwise leave out exactly the
requests a stall delays). :mod:`client.pacer` sends a schedule.

The sweep syntax of ``--rate`` (:func:`parse_rates`), requests per second,
one or more tokens, mixed freely:

* ``400``: one rate;
* ``100:1600:x2``: from 100 to 1600, each rate twice the one before
  (100 200 400 800 1600); the factor may be fractional (``x1.5``);
* ``100:500:+100``: from 100 to 500 in steps of 100 (100 200 300 400 500).

The last rate of a range is the stop value if the steps reach it (within
rounding), otherwise the last one below it. The rates are sorted and
duplicates dropped.

*Capacity* (:func:`capacity`) is the highest offered rate whose p99 latency
stays under the bound with no errors. A kind that passed at the highest rate
measured has a capacity of *at least* that rate (``censored``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

ARRIVALS = ("constant", "poisson")
# At most this many rates in one sweep.
MAX_RATES = 64
# A sweep stops offering a kind higher rates once it failed at this many rates in a row.
FAILURES_TO_STOP = 2

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^{_NUMBER}:{_NUMBER}:([x+]){_NUMBER}$")


def schedule(rate_rps: float, count: int, max_seconds: float, arrival: str, seed: int) -> list[float]:
    """Arrival offsets in seconds from the start, ascending, the first at 0.

    ``constant`` spaces them exactly ``1 / rate_rps`` apart; ``poisson``
    draws each gap from an exponential distribution of mean ``1 / rate_rps``
    (a Poisson process), from a generator seeded with ``seed`` and the rate,
    so the same seed and rate give the same offsets on every run and machine.

    :param count: at most this many arrivals.
    :param max_seconds: no arrival at or after this offset.
    :raises ValueError: a rate, count or span that is not positive, or an unknown arrival.
    """
    if not rate_rps > 0 or not math.isfinite(rate_rps):
        raise ValueError(f"the rate must be a positive number of requests per second, got {rate_rps}")
    if count < 1 or not max_seconds > 0:
        raise ValueError(f"count and max_seconds must be positive, got {count} and {max_seconds}")
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    offsets: list[float] = []
    if arrival == "constant":
        for i in range(count):
            t = i / rate_rps
            if t >= max_seconds:
                break
            offsets.append(t)
        return offsets
    rng = random.Random(f"bazaar-open-loop:{seed}:{rate_rps!r}")
    t = 0.0
    while len(offsets) < count and t < max_seconds:
        offsets.append(t)
        t += rng.expovariate(rate_rps)
    return offsets


def parse_rates(tokens: Sequence[str]) -> tuple[float, ...]:
    """The rates of a ``--rate`` sweep (see the module's docstring), sorted.

    :raises ValueError: a token that is neither a rate nor a range, a rate
        that is not positive, a range that runs backwards or does not grow, or
        more than :data:`MAX_RATES` rates.
    """
    rates: set[float] = set()
    for token in tokens:
        token = token.strip()
        match = _RANGE.match(token)
        if match:
            start, stop, how, step = float(match[1]), float(match[2]), match[3], float(match[4])
            rates.update(_expand(token, start, stop, how, step))
            continue
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a rate: write requests per second (400), a doubling range "
                             f"(100:1600:x2) or a linear one (100:500:+100)") from None
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"a rate must be positive, got {token!r}")
        rates.add(value)
        if len(rates) > MAX_RATES:
            break
    if not rates:
        raise ValueError("no rate given")
    if len(rates) > MAX_RATES:
        raise ValueError(f"at most {MAX_RATES} rates per sweep; use a coarser step")
    return tuple(sorted(rates))


def _expand(token: str, start: float, stop: float, how: str, step: float) -> list[float]:
    if not start > 0:
        raise ValueError(f"{token!r}: a range must start above 0")
    if stop < start:
        raise ValueError(f"{token!r}: the stop ({stop:g}) is below the start ({start:g})")
    if how == "x" and not step > 1:
        raise ValueError(f"{token!r}: the factor after 'x' must be above 1")
    if how == "+" and not step > 0:
        raise ValueError(f"{token!r}: the step after '+' must be above 0")
    out: list[float] = []
    i = 0
    while len(out) <= MAX_RATES:
        value = start * step ** i if how == "x" else start + step * i
        if value > stop * (1 + 1e-9):
            break
        out.append(round(value, 6))
        i += 1
    if len(out) > MAX_RATES:
        raise ValueError(f"{token!r} makes more than {MAX_RATES} rates; use a coarser step")
    return out


@dataclass(frozen=True)
class RatePoint:
    """One kind's figures at one offered rate.

    :param rate_rps: the offered rate.
    :param p99_ms: the p99 latency from due time, None if nothing was answered.
    :param errors: requests that got an error or no answer (expected refusals are not errors).
    """

    rate_rps: float
    p99_ms: float | None
    errors: int


def passes(point: RatePoint, bound_ms: float) -> bool:
    """The rule for one rate: no errors and a p99 under ``bound_ms``."""
    return point.errors == 0 and point.p99_ms is not None and point.p99_ms < bound_ms


@dataclass(frozen=True)
class Capacity:
    """What a sweep says about one kind.

    :param rate_rps: the highest offered rate that passed (None: none did).
    :param censored: it passed at the highest rate measured, so its capacity
        is at least ``rate_rps`` (a higher rate would tell more).
    :param first_failure_rps: the lowest rate that failed (None: none did).
    """

    rate_rps: float | None
    censored: bool
    first_failure_rps: float | None


def capacity(points: Sequence[RatePoint], bound_ms: float) -> Capacity:
    """The highest offered rate whose p99 stays under ``bound_ms`` with no errors.

    :param points: the kind's figures, one per rate, in any order.
    """
    ordered = sorted(points, key=lambda p: p.rate_rps)
    passed = [p.rate_rps for p in ordered if passes(p, bound_ms)]
    failed = [p.rate_rps for p in ordered if not passes(p, bound_ms)]
    best = passed[-1] if passed else None
    return Capacity(best, best is not None and best == ordered[-1].rate_rps, failed[0] if failed else None)


def keep_going(points: Sequence[RatePoint], bound_ms: float) -> bool:
    """Whether to offer a kind the next higher rate: not once its last
    :data:`FAILURES_TO_STOP` rates all failed (it is past its capacity, and
    a higher rate would only load the machine longer)."""
    ordered = sorted(points, key=lambda p: p.rate_rps)
    last = ordered[-FAILURES_TO_STOP:]
    return len(last) < FAILURES_TO_STOP or any(passes(p, bound_ms) for p in last)


def capacity_ratio(kind: Capacity, base: Capacity) -> tuple[float | None, str]:
    """``kind``'s capacity over ``base``'s, and what that number is.

    Capacities are known to the sweep's resolution (the next rate up
    failed), and so is their ratio.

    :returns: ``(ratio, meaning)`` where meaning is ``measured`` (both failed
        at some rate), ``at least`` (only ``kind`` passed the top rate: its
        real ratio is higher), ``at most`` (only ``base`` did: lower),
        ``unknown`` (both did), or ``no data`` (``base`` passed no rate;
        ratio None). A kind that passed no rate counts as 0.
    """
    if base.rate_rps is None:
        return None, "no data"
    ratio = round((kind.rate_rps or 0.0) / base.rate_rps, 3)
    if kind.censored and base.censored:
        return ratio, "unknown"
    if kind.censored:
        return ratio, "at least"
    if base.censored:
        return ratio, "at most"
    return ratio, "measured"
