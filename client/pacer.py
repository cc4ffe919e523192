"""Sends an open-loop schedule: each request at its due time, on a pool of
connections that grows as the load needs.

One *dispatcher* (the calling thread) sleeps until each request is due and
puts it on a queue; *connection threads*, each with its own connection (for
the benchmark, one keep-alive :class:`client.http.HttpClient`), take requests
off the queue and send them. When a request falls due and no connection is
idle, the dispatcher starts another connection thread, up to
``max_connections``; past that the request waits in the queue. Either way its
latency is counted from its due time (:mod:`client.openloop`), so a server
that stalls is charged for every request due during the stall, however few
connections were waiting on it.

Bounded: a request that could not be sent within ``give_up_s`` of its due
time is not sent and counts as an error (``not sent``); each send is bounded
by its connection's own timeout; the threads are joined with a deadline.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .stats import NOT_SENT, Recorder, encode, new_histogram, record_s

# Requests not sent within this long of their due time are given up (errors).
GIVE_UP_S = 10.0
# Extra time the threads get, past the last due time plus give-up and send
# timeouts, before the pacer stops waiting for them.
JOIN_SLACK_S = 5.0
# The interpreter's thread switch interval while a pacer runs: the dispatcher
# must wake on time even while connection threads parse answers (the
# default, 5 ms, would delay it by up to that).
SWITCH_INTERVAL_S = 0.0005


class Connection(Protocol):
    """One connection, used by one thread."""

    def send(self, payload: Any) -> tuple[int, str]:
        """Send one request and wait for its answer: ``(HTTP status or 0, error message)``."""

    def close(self) -> None:
        """Release the connection."""


@dataclass(frozen=True)
class Planned:
    """One request of a schedule.

    :param offset_s: when it is due, in seconds after the start.
    :param kind: what it is, for the :class:`client.stats.Recorder` (``lookup``, ``trade``).
    :param payload: what the connection sends (opaque to the pacer).
    """

    offset_s: float
    kind: str
    payload: Any = None


@dataclass
class PacerResult:
    """What a pacer run did.

    ``timings`` holds ``(offset_s, due, sent, done, status)`` of every request
    (monotonic seconds; sent and done None for one never sent) when the run
    asked to keep them.
    """

    recorder: Recorder = field(default_factory=Recorder)
    lag: Any = field(default_factory=new_histogram)  # send time - due time, us
    planned: int = 0
    sent: int = 0
    unsent: int = 0
    connections: int = 0
    timings: list[tuple[float, float, float | None, float | None, int]] | None = None

    def snapshot(self) -> dict[str, Any]:
        """Plain data (picklable, JSON-able)."""
        return {"recorder": self.recorder.snapshot(), "lag": encode(self.lag), "planned": self.planned,
                "sent": self.sent, "unsent": self.unsent, "connections": self.connections}


class Pacer:
    """Runs one schedule.

    :param planned: the requests, in order of their offsets.
    :param connect: opens one connection (called from the thread that will use it).
    :param max_connections: at most this many connections at once, at least 1.
    :param give_up_s: a request not sent within this long of its due time is not sent.
    :param clock: monotonic seconds.
    :param keep_timings: keep every request's times in :attr:`PacerResult.timings`.
    """

    def __init__(self, planned: Sequence[Planned], connect: Callable[[], Connection], max_connections: int,
                 give_up_s: float = GIVE_UP_S, clock: Callable[[], float] = time.monotonic,
                 keep_timings: bool = False) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.planned = list(planned)
        self.connect = connect
        self.max_connections = max_connections
        self.give_up_s = give_up_s
        self.clock = clock
        self.result = PacerResult(planned=len(self.planned), timings=[] if keep_timings else None)
        self._cond = threading.Condition()
        self._queue: deque[tuple[Planned, float]] = deque()
        self._idle = 0
        self._closing = False
        self._done = 0
        self._threads: list[threading.Thread] = []
        self._failure: BaseException | None = None

    def run(self, start: float, progress: Callable[[int], None] | None = None,
            join_timeout_s: float | None = None) -> PacerResult:
        """Send every request at ``start + offset_s`` (monotonic seconds) and
        wait for the answers.

        :param progress: called with the number of requests done so far (from any thread).
        :param join_timeout_s: how long to wait for the answers after the last
            request is due (default: give-up time, plus a send's worst case, plus slack).
        """
        self._progress = progress
        previous = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self._dispatch(start)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            last_due = start + (self.planned[-1].offset_s if self.planned else 0.0)
            wait = join_timeout_s if join_timeout_s is not None else self.give_up_s + 30.0 + JOIN_SLACK_S
            deadline = max(self.clock(), last_due) + wait
            for thread in self._threads:
                thread.join(timeout=max(0.0, deadline - self.clock()))
            sys.setswitchinterval(previous)
        if self._failure is not None:
            raise RuntimeError(f"a connection thread failed: {self._failure!r}") from self._failure
        stuck = sum(t.is_alive() for t in self._threads)
        if stuck:
            raise RuntimeError(f"{stuck} connection thread(s) still sending after {wait:g} s")
        return self.result

    def _dispatch(self, start: float) -> None:
        for item in self.planned:
            due = start + item.offset_s
            delay = due - self.clock()
            if delay > 0:
                time.sleep(delay)
            with self._cond:
                self._queue.append((item, due))
                if self._idle < len(self._queue) and len(self._threads) < self.max_connections:
                    self._start_thread()
                self._cond.notify()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._serve, name=f"pacer-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        self.result.connections = len(self._threads)
        self._idle += 1  # counted idle from now: the next request due need not start another
        thread.start()

    def _serve(self) -> None:
        """A connection thread: take due requests off the queue and send them until closing."""
        conn: Connection | None = None
        try:
            try:
                conn = self.connect()
            except BaseException:
                with self._cond:
                    self._idle -= 1  # counted idle when started: the dispatcher may start another
                raise
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        self._idle -= 1
                        return
                    item, due = self._queue.popleft()
                    self._idle -= 1
                self._send(conn, item, due)
                with self._cond:
                    self._idle += 1
        except BaseException as exc:  # reported by run(); the other threads carry on
            self._failure = exc
        finally:
            if conn is not None:
                conn.close()

    def _send(self, conn: Connection, item: Planned, due: float) -> None:
        sent = self.clock()
        if sent - due > self.give_up_s:
            status, message, done = 0, NOT_SENT, None
        else:
            status, message = conn.send(item.payload)
            done = self.clock()
        with self._cond:
            result = self.result
            if done is None:
                result.unsent += 1
                result.recorder.add(item.kind, 0, message, sent - due, due)
            else:
                result.sent += 1
                record_s(result.lag, sent - due)
                result.recorder.add(item.kind, status, message, done - due, due)
            if result.timings is not None:
                result.timings.append((item.offset_s, due, None if done is None else sent, done, status))
            self._done += 1
            done_count = self._done
        if self._progress is not None:
            self._progress(done_count)
