"""The benchmark's load: worker processes, each one client with one connection.

Python threads in one process would share one interpreter lock and measure
the client more than the server, so the load comes from separate processes
(``multiprocessing``, spawn start method), started once for the whole
benchmark. :class:`WorkerPool` runs a *job* on every worker at once:

1. it sends each worker the job; the worker opens its connection, warms it
   up with a few untimed requests and says it is ready;
2. when every worker is ready it sends one start time; the workers start
   together and report their progress in a shared array;
3. each worker sends back its :meth:`client.session.SessionResult.snapshot`.

A job is a plain dict: ``{"kind": "http", "host", "port", "p", "iterations",
"max_seconds", "seed", "stocks", "warmup", "verify"}`` runs
:func:`client.session.run` against an HTTP server (:func:`prepare_http`);
``{"kind": "zmq", "endpoint", "curve", ...}`` runs bare ZeroMQ REQ -> ROUTER
round trips (:func:`prepare_zmq`), with the CURVE keys ``curve`` (a
:class:`common.sockets.CurveClient`, or None for a plain socket);
``{"kind": "open", "host", "port", "planned", "max_connections", "stocks",
"warmup"}`` sends an open-loop schedule (:func:`prepare_open`): ``planned``
is this worker's share of it, a list of :class:`client.pacer.Planned`, sent
on as many keep-alive connections as it needs, up to ``max_connections``.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from .http import REQUEST_TIMEOUT_S, HttpClient
from .pacer import GIVE_UP_S, JOIN_SLACK_S, Pacer
from .session import SessionResult, SessionSpec, new_key, run
from .stats import Recorder

# How long a worker may take to connect and warm up.
READY_TIMEOUT_S = 30.0
# Workers start this long after the last one said it is ready.
START_DELAY_S = 0.05
# How often the pool reports progress while a job runs.
PROGRESS_EVERY_S = 0.1
# A ZeroMQ round trip without an answer in this time counts as lost.
ZMQ_TIMEOUT_MS = 5000


class WorkerError(RuntimeError):
    """A worker failed or did not finish its job in time."""


Runner = Callable[[Callable[[int], None], float], dict]


def prepare_zmq(job: dict[str, Any]) -> Runner:
    """Open a REQ socket to ``job["endpoint"]`` and warm it up; returns the runner.

    The runner sends bare REQ -> ROUTER round trips, recorded as
    ``roundtrip``: each request is a :class:`common.protocol.Lookup` encoded,
    sent, its :class:`common.protocol.StockInfo` answer received and decoded
    (:mod:`common.codec`), as the frontend does for a lookup, on one REQ
    socket reused for every request. An answer that is not the stock asked
    for counts as no answer.
    """
    import zmq

    from common import codec
    from common.errors import RemoteProtocolError
    from common.protocol import Lookup, StockInfo
    from common.sockets import apply_curve

    rng = random.Random(job["seed"])
    ctx = zmq.Context()

    def open_socket() -> zmq.Socket:
        sock = apply_curve(ctx.socket(zmq.REQ), job.get("curve"))
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(job["endpoint"])
        return sock

    def roundtrip(sock: zmq.Socket, name: str) -> bool:
        sock.send(codec.encode(Lookup(name)))
        if not sock.poll(ZMQ_TIMEOUT_MS):
            return False
        try:
            reply = codec.decode(sock.recv())
        except RemoteProtocolError:
            return False
        return isinstance(reply, StockInfo) and reply.name == name

    sock = open_socket()
    for _ in range(job.get("warmup", 0)):
        if not roundtrip(sock, rng.choice(job["stocks"])):
            sock.close(linger=0)
            ctx.term()
            raise WorkerError(f"no answer from {job['endpoint']} while warming up")

    def runner(progress: Callable[[int], None], start_at: float) -> dict[str, Any]:
        nonlocal sock
        result = SessionResult()
        rec: Recorder = result.recorder
        try:
            _sleep_until(start_at)
            start = time.monotonic()
            deadline = start + job["max_seconds"]
            for i in range(job["iterations"]):
                if time.monotonic() >= deadline:
                    result.stopped_by = "time"
                    break
                name = rng.choice(job["stocks"])
                began = time.monotonic()
                t0 = time.perf_counter()
                try:
                    ok = roundtrip(sock, name)
                except zmq.ZMQError:
                    ok = False
                elapsed = time.perf_counter() - t0
                if ok:
                    rec.add("roundtrip", 200, "", elapsed, began)
                else:
                    rec.add("roundtrip", 0, "no answer", elapsed, began)
                    sock.close(linger=0)  # Lazy Pirate: a REQ without its answer is stuck
                    sock = open_socket()
                result.iterations = i + 1
                progress(result.iterations)
            result.trade_s = time.monotonic() - start
        finally:
            sock.close(linger=0)
            ctx.term()
        return result.snapshot()

    return runner


def prepare_http(job: dict[str, Any]) -> Runner:
    """Open a keep-alive connection to ``job["host"]:job["port"]`` and warm
    it up with a few untimed lookups; the runner is one
    :func:`client.session.run`."""
    http = HttpClient(job["host"], job["port"])
    rng = random.Random(job["seed"])
    for _ in range(job.get("warmup", 0)):
        http.get(f"/stocks/{rng.choice(job['stocks'])}")
    spec = SessionSpec(stocks=tuple(job["stocks"]), p=job["p"], iterations=job["iterations"],
                       max_seconds=job["max_seconds"], seed=job["seed"], verify=job.get("verify", True))

    def runner(progress: Callable[[int], None], start_at: float) -> dict[str, Any]:
        try:
            _sleep_until(start_at)
            return run(http, spec, on_iteration=progress).snapshot()
        finally:
            http.close()

    return runner


class HttpConnection:
    """One keep-alive connection for :class:`client.pacer.Pacer`: a payload is
    ``("GET", path)`` or ``("POST", path, doc)``; a POST carries a fresh
    ``Idempotency-Key`` and is sent once."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def send(self, payload: tuple) -> tuple[int, str]:
        if payload[0] == "GET":
            reply = self.http.get(payload[1])
        else:
            reply = self.http.post(payload[1], payload[2], {"Idempotency-Key": new_key()})
        return reply.status, reply.error

    def close(self) -> None:
        self.http.close()


def prepare_open(job: dict[str, Any]) -> Runner:
    """Open one keep-alive connection and warm it up with a few untimed
    lookups; the runner sends ``job["planned"]`` from the start time on,
    opening more connections as the schedule needs them (the first one is
    the warm one)."""
    warm = [HttpClient(job["host"], job["port"])]
    rng = random.Random(job["seed"])
    for _ in range(job.get("warmup", 0)):
        warm[0].get(f"/stocks/{rng.choice(job['stocks'])}")

    def connect() -> HttpConnection:
        try:
            http = warm.pop()  # the warm one, for the first thread that asks
        except IndexError:
            http = HttpClient(job["host"], job["port"])
        return HttpConnection(http)

    pacer = Pacer(job["planned"], connect, job["max_connections"], give_up_s=job.get("give_up_s", GIVE_UP_S))

    def runner(progress: Callable[[int], None], start_at: float) -> dict[str, Any]:
        try:
            start = time.monotonic() + (start_at - time.time())  # the pool's start time, on this clock
            join_s = pacer.give_up_s + REQUEST_TIMEOUT_S + JOIN_SLACK_S
            return pacer.run(start, progress, join_timeout_s=join_s).snapshot()
        finally:
            for http in warm:
                http.close()

    return runner


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def _worker_main(index: int, conn: Connection, counters) -> None:
    """A worker's loop: prepare, say ready, wait for the start, run, report; until ``stop``."""
    def progress(n: int) -> None:
        counters[index] = n

    try:
        while True:
            command, job = conn.recv()
            if command == "stop":
                return
            try:
                runner = PREPARE[job["kind"]](job)
                conn.send(("ready", None))
                command, start_at = conn.recv()
                if command == "stop":
                    return
                conn.send(("done", runner(progress, start_at)))
            except (EOFError, KeyboardInterrupt):
                raise
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return


PREPARE: dict[str, Callable[[dict[str, Any]], Runner]] = {"zmq": prepare_zmq, "http": prepare_http,
                                                          "open": prepare_open}


class WorkerPool:
    """``count`` worker processes, each running one client at a time.

    :param count: how many concurrent clients.
    """

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.counters = ctx.Array("q", count, lock=False)
        self.conns: list[Connection] = []
        self.procs = []
        for i in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(i, child, self.counters), name=f"bench-worker-{i}",
                               daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def run(self, jobs: list[dict[str, Any]], timeout_s: float,
            on_progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Run ``jobs[i]`` on worker ``i``, all starting at once.

        :param timeout_s: bound on the whole job, after the workers are ready.
        :param on_progress: called with the iterations done by all workers.
        :raises WorkerError: a worker failed, died, or ran out of time.
        """
        if len(jobs) != len(self.conns):
            raise ValueError(f"{len(jobs)} jobs for {len(self.conns)} workers")
        for i, (conn, job) in enumerate(zip(self.conns, jobs)):
            self.counters[i] = 0
            conn.send(("prepare", job))
        self._collect("ready", READY_TIMEOUT_S, None)
        start_at = time.time() + START_DELAY_S
        for conn in self.conns:
            conn.send(("go", start_at))
        return self._collect("done", timeout_s, on_progress)

    def _collect(self, expect: str, timeout_s: float, on_progress: Callable[[int], None] | None) -> list[Any]:
        results: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        waiting = {conn: i for i, conn in enumerate(self.conns)}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{len(waiting)} worker(s) did not finish ({expect}) within {timeout_s:g}s")
            for conn in wait(list(waiting), timeout=min(left, PROGRESS_EVERY_S)):
                i = waiting.pop(conn)
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    raise WorkerError(f"worker {i} died (exit code {self.procs[i].exitcode})") from None
                if status == "error":
                    raise WorkerError(f"worker {i} failed:\n{value}")
                results[i] = value
            if on_progress is not None:
                on_progress(sum(self.counters[:]))
        return [results[i] for i in range(len(self.conns))]

    def close(self) -> None:
        """Stop every worker: ask, then terminate, then kill."""
        for conn in self.conns:
            try:
                conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        for conn in self.conns:
            conn.close()
