"""The seed's client session: lookups, trades with probability p, and the
verification of every acknowledged trade at the end.

One iteration looks up a random stock; when the lookup succeeds, it sends a
trade of that stock with probability ``p``, of a random quantity (1 to
:data:`MAX_QUANTITY`) and a random type. Every trade carries its own
``Idempotency-Key``, so a trade whose answer was lost (no answer, or HTTP 503)
is resent with the same key and is never applied twice; a trade still without
an answer after :data:`TRADE_ATTEMPTS` is *unknown* (it may or may not have
happened) and is settled at the end by one more send with its key.

At the end every acknowledged trade is read back with ``GET /orders/<n>``;
a trade the server answers differently, does not know (409) or does not
answer is a :class:`Mismatch`. Two acknowledged trades with one transaction
number are a mismatch too.

A frontend that is down or restarting (connections refused or reset) is
ridden out: any request is resent, the same trade with the same key, for up
to :data:`OUTAGE_S` of continuous unreachability, with a note printed when
the outage starts and ends; the summary says how many resends it cost. A
session therefore fails only on a real mismatch, or on an outage longer than
that.

Both parts are bounded: the trading loop by ``iterations`` and by
``max_seconds`` of wall time, the verification by ``max_seconds`` again.
The same :func:`run` drives ``python -m client session`` and each worker of
the benchmark.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import config

from .http import NO_ANSWER, HttpClient, Reply
from .stats import Recorder

# Trades are of 1 to MAX_QUANTITY shares (each stock starts with 100).
MAX_QUANTITY = 10
# Sends of one trade (same key) when there is no answer or an HTTP 503.
TRADE_ATTEMPTS = 3
# Sends of one order query under the same conditions.
QUERY_ATTEMPTS = 3
# Pause before resending, doubled on each attempt.
RETRY_PAUSE_S = 0.05
# Answers that say the outcome is unknown and a resend may tell.
RETRYABLE = (NO_ANSWER, 503)
# How long a frontend may stay unreachable (refused or reset connections)
# while the session keeps resending, and the pause between those resends.
OUTAGE_S = 10.0
OUTAGE_PAUSE_S = 0.05


@dataclass(frozen=True)
class SessionSpec:
    """What one session does.

    :param stocks: the names to pick from.
    :param p: probability of a trade after a successful lookup (0 to 1).
    :param iterations: lookups to send (the loop's count cap).
    :param max_seconds: wall-time cap of the loop, and again of the verification.
    :param seed: seeds the random choices (None: a random seed).
    :param verify: read back every acknowledged trade at the end.
    """

    stocks: tuple[str, ...]
    p: float = 0.6
    iterations: int = 1000
    max_seconds: float = 300.0
    seed: int | None = None
    verify: bool = True


@dataclass(frozen=True)
class Acked:
    """A trade the server acknowledged."""

    key: str
    txn: int
    name: str
    quantity: int
    side: str

    def expected(self) -> dict[str, Any]:
        return {"transaction_number": self.txn, "name": self.name, "quantity": self.quantity, "type": self.side}


@dataclass(frozen=True)
class Mismatch:
    """An acknowledged trade the order service does not confirm.

    :param kind: ``differs``, ``missing`` (HTTP 409), ``unverified`` (no
        answer to the query) or ``duplicate`` (two trades, one number).
    """

    kind: str
    trade: Acked
    detail: str

    def line(self) -> str:
        return (f"{self.kind}: order {self.trade.txn} ({self.trade.side} {self.trade.quantity} "
                f"{self.trade.name}, key {self.trade.key}): {self.detail}")


class Outage:
    """Rides out a frontend that is down or restarting, for a bounded time.

    :param limit_s: how long one outage may last before requests give up.
    :param note: prints a line when an outage starts and when it ends (None: quiet).
    """

    def __init__(self, limit_s: float = OUTAGE_S, note: Callable[[str], None] | None = None) -> None:
        self.limit_s = limit_s
        self.note = note
        self.began: float | None = None
        self.outages = 0
        self.retries = 0
        self.longest_s = 0.0

    def may_wait(self, reply: Reply, deadline: float) -> bool:
        """True (after counting it) when ``reply`` says the frontend is
        unreachable and the outage is still young enough to wait for."""
        if not reply.unreachable:
            return False
        now = time.monotonic()
        if self.began is None:
            self.began = now
            self.outages += 1
            if self.note is not None:
                self.note(f"the frontend is unreachable ({reply.error}); resending for up to {self.limit_s:g} s")
        if now - self.began >= self.limit_s or now + OUTAGE_PAUSE_S > deadline:
            return False
        self.retries += 1
        return True

    def answered(self) -> None:
        """A request got an answer: any outage is over."""
        if self.began is not None:
            lasted = round(time.monotonic() - self.began, 3)
            self.longest_s = max(self.longest_s, lasted)
            self.began = None
            if self.note is not None:
                self.note(f"the frontend answers again after {lasted:.1f} s ({self.retries} resends so far)")


@dataclass
class SessionResult:
    """What a session did and saw."""

    recorder: Recorder = field(default_factory=Recorder)
    iterations: int = 0
    stopped_by: str = "iterations"      # or "time"
    acked: list[Acked] = field(default_factory=list)
    refused: int = 0                    # 403 not enough stock, 404 unknown stock
    errors: int = 0                     # other 4xx/5xx answers to trades
    unknown: int = 0                    # no answer after every attempt
    settled: int = 0                    # unknown trades whose outcome the final resend told
    unsettled: int = 0                  # unknown even after that
    verified: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    trade_s: float = 0.0
    verify_s: float = 0.0
    outage: Outage = field(default_factory=Outage)

    @property
    def passed(self) -> bool:
        """Every acknowledged trade verified and no trade left unknown."""
        return not self.mismatches and self.unsettled == 0

    def snapshot(self, max_lines: int = 20) -> dict[str, Any]:
        """Plain data for the benchmark (picklable, JSON-able)."""
        return {
            "recorder": self.recorder.snapshot(),
            "iterations": self.iterations, "stopped_by": self.stopped_by, "acked": len(self.acked),
            "refused": self.refused, "errors": self.errors, "unknown": self.unknown, "settled": self.settled,
            "unsettled": self.unsettled, "verified": self.verified, "mismatches": len(self.mismatches),
            "mismatch_lines": [m.line() for m in self.mismatches[:max_lines]],
            "trade_s": self.trade_s, "verify_s": self.verify_s,
            "outages": self.outage.outages, "outage_retries": self.outage.retries,
            "longest_outage_s": round(self.outage.longest_s, 3),
        }


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


def send(recorder: Recorder, kind: str, call: Callable[[], Reply]) -> Reply:
    """Send one request through ``call`` and record it as ``kind``."""
    started = time.monotonic()
    reply = call()
    recorder.add(kind, reply.status, reply.error, reply.elapsed_s, started)
    return reply


def resend(result: SessionResult, kind: str, call: Callable[[], Reply], attempts: int, deadline: float) -> Reply:
    """:func:`send`, resent while the answer is in :data:`RETRYABLE`, at most
    ``attempts`` times and not past ``deadline`` (monotonic seconds); resends
    while the frontend is unreachable do not count (see :class:`Outage`)."""
    pause = RETRY_PAUSE_S
    tries = 0
    while True:
        reply = send(result.recorder, kind, call)
        if reply.status != NO_ANSWER or not reply.unreachable:
            result.outage.answered()
        if reply.status not in RETRYABLE:
            return reply
        if result.outage.may_wait(reply, deadline):
            time.sleep(OUTAGE_PAUSE_S)
            continue
        tries += 1
        if tries >= attempts or time.monotonic() + pause > deadline:
            return reply
        time.sleep(pause)
        pause *= 2


def trade(http: HttpClient, result: SessionResult, key: str, name: str, quantity: int, side: str,
          deadline: float, attempts: int = TRADE_ATTEMPTS) -> Reply:
    """Place one trade, resending with the same ``Idempotency-Key`` while its outcome is unknown."""
    doc = {"name": name, "quantity": quantity, "type": side}
    headers = {"Idempotency-Key": key}
    return resend(result, "trade", lambda: http.post("/orders", doc, headers), attempts, deadline)


def run(http: HttpClient, spec: SessionSpec, on_iteration: Callable[[int], None] | None = None,
        note: Callable[[str], None] | None = None) -> SessionResult:
    """Run one session against the frontend behind ``http``.

    :param on_iteration: called with the number of iterations done so far
        (progress reporting).
    :param note: prints a line when the frontend becomes unreachable and again
        when it answers (None: quiet).
    """
    rng = random.Random(spec.seed)
    result = SessionResult(outage=Outage(note=note))
    pending: list[tuple[str, str, int, str]] = []  # unknown trades: key, name, quantity, side
    paths = {name: f"/stocks/{quote(name)}" for name in spec.stocks}
    start = time.monotonic()
    deadline = start + spec.max_seconds
    for i in range(spec.iterations):
        if time.monotonic() >= deadline:
            result.stopped_by = "time"
            break
        name = rng.choice(spec.stocks)
        looked = resend(result, "lookup", lambda: http.get(paths[name]), 1, deadline)
        result.iterations = i + 1
        if looked.ok and rng.random() < spec.p:
            quantity, side, key = rng.randint(1, MAX_QUANTITY), rng.choice(("buy", "sell")), new_key()
            reply = trade(http, result, key, name, quantity, side, deadline)
            _file(result, pending, reply, key, name, quantity, side)
        if on_iteration is not None:
            on_iteration(result.iterations)
    result.trade_s = time.monotonic() - start
    if spec.verify:
        started = time.monotonic()
        _settle(http, result, pending, started + spec.max_seconds)
        verify(http, result, started + spec.max_seconds)
        result.verify_s = time.monotonic() - started
    return result


def _file(result: SessionResult, pending: list, reply: Reply, key: str, name: str, quantity: int, side: str) -> None:
    """Sort one trade's final answer into acknowledged, refused, unknown or error."""
    if reply.ok:
        data = reply.data or {}
        result.acked.append(Acked(key, data.get("transaction_number"), name, quantity, side))
        if data.get("name") != name or data.get("quantity") != quantity or data.get("type") != side:
            result.mismatches.append(Mismatch("differs", result.acked[-1], f"acknowledged as {data}"))
    elif reply.status in (403, 404):
        result.refused += 1
    elif reply.status in RETRYABLE:
        result.unknown += 1
        pending.append((key, name, quantity, side))
    else:
        result.errors += 1


def _settle(http: HttpClient, result: SessionResult, pending: list, deadline: float) -> None:
    """Resend each unknown trade with its key: the answer tells what happened."""
    for key, name, quantity, side in pending:
        reply = trade(http, result, key, name, quantity, side, deadline)
        if reply.status in RETRYABLE:
            result.unsettled += 1
            continue
        result.settled += 1
        if reply.ok:
            _file(result, [], reply, key, name, quantity, side)


def verify(http: HttpClient, result: SessionResult, deadline: float) -> None:
    """Read back every acknowledged trade; record each one that differs."""
    seen: dict[int, Acked] = {}
    for acked in result.acked:
        if acked.txn in seen:
            result.mismatches.append(Mismatch("duplicate", acked, f"same number as key {seen[acked.txn].key}"))
        seen[acked.txn] = acked
    for acked in result.acked:
        if not isinstance(acked.txn, int):
            result.mismatches.append(Mismatch("differs", acked, f"transaction number {acked.txn!r}"))
            continue
        if time.monotonic() >= deadline:
            result.mismatches.append(Mismatch("unverified", acked, "verification ran out of time"))
            continue
        reply = resend(result, "order", lambda: http.get(f"/orders/{acked.txn}"), QUERY_ATTEMPTS, deadline)
        if reply.ok and reply.data == acked.expected():
            result.verified += 1
        elif reply.ok:
            result.mismatches.append(Mismatch("differs", acked, f"server has {reply.data}"))
        elif reply.status == 409:
            result.mismatches.append(Mismatch("missing", acked, "HTTP 409 Order number does not exist"))
        else:
            result.mismatches.append(Mismatch("unverified", acked, f"HTTP {reply.status} {reply.error}".strip()))


def load_stocks(csv_path: str) -> tuple[str, ...]:
    """Stock names from the cluster's initial stock list (``[cluster] stocks_csv``).

    :raises ConfigError: if the file is missing or malformed.
    """
    return tuple(row[0] for row in config.load_stocks(Path(csv_path)))


def parse_stocks(text: str) -> tuple[str, ...]:
    """``"A,B,C"`` -> ``("A", "B", "C")``."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def stock_names(option: str | None, csv_path: str) -> Sequence[str]:
    """The ``--stocks`` option if given, else the names in the catalog's CSV."""
    return parse_stocks(option) if option else load_stocks(csv_path)
