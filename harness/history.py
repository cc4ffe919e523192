"""Recording what clients did, the way Jepsen does, and a load that records.

Every trade is an :class:`Op`: invoked at a time, then ``ok`` (with its
transaction number), ``fail`` (refused: not enough stock, unknown stock), or
``unknown`` (no answer, a 503, a broken connection: it may or may not have
happened). :class:`Load` runs concurrent HTTP clients against frontends for a
bounded count and time, each trade with its own Idempotency-Key, and keeps the
history for :mod:`harness.checker`.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from .cluster import Http

STOCKS = ("GameStart", "FishCo", "BoarCo", "MenhirCo")


@dataclass
class Op:
    key: str
    name: str
    quantity: int
    side: str
    invoked: float
    client: int
    status: str = "invoked"  # invoked, ok, fail, unknown
    txn: int | None = None
    completed: float | None = None
    detail: str = ""
    attempts: int = 1

    def line(self) -> str:
        done = "" if self.completed is None else f"{self.completed:9.3f}"
        return (f"{self.invoked:9.3f} {done:>9} client {self.client:2} {self.key:<14} {self.side:4} "
                f"{self.quantity:3} {self.name:<10} {self.status:<7} txn={self.txn} {self.detail}")


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and its reply, as a client saw them."""

    start: float
    end: float
    method: str
    path: str
    body: object
    status: int | None  # None: no answer (the connection failed)
    reply: object


@dataclass
class History:
    """All operations, in invocation order, with times relative to ``t0``;
    ``requests`` holds every HTTP request and reply the clients exchanged."""

    t0: float = field(default_factory=time.monotonic)
    ops: list[Op] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    requests: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, path: str, body: object, status: int | None, reply: object,
               start: float, end: float) -> None:
        """An :class:`Http` recorder: keep one request and its reply."""
        exchange = Exchange(start - self.t0, end - self.t0, method, path, body, status, reply)
        with self.lock:
            self.requests.append(exchange)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, text: str) -> None:
        """Record a fault or any other event next to the operations."""
        with self.lock:
            self.events.append((self.now(), text))

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def by_status(self, status: str) -> list[Op]:
        return [op for op in self.ops if op.status == status]

    def answered(self, kind: str, start: float, end: float) -> tuple[int, int]:
        """Of the requests of ``kind`` (``lookup``, ``trade`` or ``read``) sent
        between ``start`` and ``end`` (history times), how many got an answer
        that is not an error of the system (not a 5xx, not a failed
        connection), and how many there were."""
        prefix = {"lookup": ("GET", "/stocks/"), "trade": ("POST", "/orders"), "read": ("GET", "/orders/")}[kind]
        with self.lock:
            sent = [x for x in self.requests
                    if (x.method, x.path[:len(prefix[1])]) == prefix and start <= x.start <= end]
        good = sum(1 for x in sent if x.status is not None and x.status < 500)
        return good, len(sent)


def classify(reply) -> tuple[str, int | None, str]:
    """An HTTP reply to a trade as ``(status, txn, detail)``."""
    if reply.status == 200:
        return "ok", reply.data["transaction_number"], ""
    if reply.status in (403, 404):
        return "fail", None, reply.error["message"]
    return "unknown", None, f"HTTP {reply.status}"


class Load:
    """Concurrent trading clients, bounded by ``max_ops`` and ``max_seconds``.

    :param ports: frontends' HTTP ports on 127.0.0.1, or ``(address, port)``
        pairs (:attr:`harness.cluster.Cluster.http_addresses`); client k uses
        ``ports[k % len(ports)]``.
    :param pace_s: pause between one client's trades (keeps the load moderate).
    :param lookups: look the stock up before each trade.
    :param reads: read each acknowledged trade back (``GET /orders/<n>``).
    """

    def __init__(self, history: History, ports: list[int] | list[tuple[str, int]], clients: int = 4, max_ops: int = 400,
                 max_seconds: float = 30.0, seed: int = 0, pace_s: float = 0.0, lookups: bool = False,
                 reads: bool = False) -> None:
        self.history = history
        self.ports = ports
        self.clients = clients
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.seed = seed
        self.pace_s = pace_s
        self.lookups = lookups
        self.reads = reads
        self._stop = threading.Event()
        self._count = 0
        self._count_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(clients)]

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._deadline = time.monotonic() + self.max_seconds
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:
                t.join(timeout=timeout)

    def wait(self, timeout: float) -> None:
        """Until every client finished its share (max_ops or max_seconds)."""
        for t in self._threads:
            t.join(timeout=timeout)

    def acked(self) -> int:
        return sum(1 for op in self.history.ops if op.status == "ok")

    def _take(self) -> int | None:
        with self._count_lock:
            if self._count >= self.max_ops:
                return None
            self._count += 1
            return self._count

    def _client(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        target = self.ports[k % len(self.ports)]
        host, port = target if isinstance(target, tuple) else ("127.0.0.1", target)
        http = Http(port, timeout=15, record=self.history.record, host=host)
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                n = self._take()
                if n is None:
                    return
                name = rng.choice(STOCKS)
                if self.lookups:
                    try:
                        http.get(f"/stocks/{name}")
                    except OSError:
                        pass
                op = Op(key=f"s{self.seed}-c{k}-{n}", name=name, quantity=rng.randint(1, 5),
                        side=rng.choice(("buy", "sell")), invoked=self.history.now(), client=k)
                self.history.add(op)
                try:
                    reply = http.post("/orders", {"name": op.name, "quantity": op.quantity, "type": op.side},
                                      headers={"Idempotency-Key": op.key})
                    op.status, op.txn, op.detail = classify(reply)
                except OSError as exc:
                    op.status, op.detail = "unknown", type(exc).__name__
                op.completed = self.history.now()
                if self.reads and op.status == "ok":
                    try:
                        http.get(f"/orders/{op.txn}")
                    except OSError:
                        pass
                if op.status == "unknown":
                    self._stop.wait(0.05)  # back off: the frontend may be down
                elif self.pace_s:
                    self._stop.wait(self.pace_s)
        finally:
            http.close()
