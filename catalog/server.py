"""The catalog's I/O loop: sockets around the pure :class:`catalog.projection.Projection`.

Sockets, all owned by the one loop thread::

    router       ROUTER, bound    lookups from frontends (DEALERs)
    replica[r]   DEALER -> r      fetches of committed entries (a long poll)
    bus          PUB -> broker    stock changes, heartbeats, events

The catalog follows the order log: it keeps one fetch out at a time, to
the replica the last answer named as leader, applies each page in one
SQLite transaction, publishes what changed (``stock`` topic, one
``stock_changes`` message per page, chained by log index so that a
subscriber sees a gap), and answers lookups from memory. The heartbeat
carries the index applied and the commit index the replicas told of, so
its lag shows in the monitor; while it catches up a long way it logs its
progress every few seconds.

Every socket runs CURVE: the router is a server whose connections the
catalog's ZAP handler (:class:`common.security.Gate`, served by the same
loop) judges; each DEALER holds the public key of the replica it dials.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from common import codec, rpc, security, sockets
from common.bus import Publisher
from common.config import Config
from common.errors import RemoteProtocolError, StorageFailed, StorageFull, error_code
from common.heartbeat import Ticker
from common.logs import get_logger
from common.node import DRAIN_LIMIT, Loop, RestartFromDisk, readable, serve
from common.protocol import (
    CatalogStatus, CaughtUpEvent, CommittedEntries, Error, ErrorCode, Lookup, NodeKind, SocketEvent,
    StartedEvent, StorageEvent, Topic,
)
from common.storage import Faults, StorageState

from .projection import CaughtUp, Projection, Publish, Refused, Reply, ToReplica
from .store import SqliteCatalogStore

log = get_logger(__name__)

# While far behind, say how far every so often.
PROGRESS_EVERY_S = 2.0


@dataclass
class Counters:
    """What the catalog counts since it started (its heartbeat's :class:`CatalogStatus`)."""

    lookups: int = 0
    behind: int = 0
    bad_requests: int = 0


class CatalogServer:
    """The catalog node. Build it, then call :meth:`run` until ``stop`` is set."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: threading.Event, now: float,
                 storage_faults: Path | None = None) -> None:
        """:param storage_faults: a trigger file for injected storage failures (fault tests only).
        :raises StorageCorrupt: the catalog's data cannot be trusted (it says what to do).
        """
        self.config = config
        keys = security.node_keys(config, "catalog")  # missing keys stop the node before it touches its data
        path = config.data_dir / "catalog.sqlite3"
        self.store = SqliteCatalogStore(path, cluster_id=config.cluster_id, faults=Faults(storage_faults))
        self.storage = StorageState(path)
        window = config.heartbeat.window_s
        self.projection = Projection(self.store, [r.id for r in config.orders], wait_s=window,
                                     timeout_s=config.timeouts.request_ms / 1000, now=now)
        self.loop = Loop(stop)
        # The gate first: no server socket binds before its ZAP handler is there.
        self.gate = security.Gate(ctx, keys, lambda event: self.bus.event(event, warn=True))
        self.gate.attach(self.loop)
        self.router = sockets.make_socket(ctx, zmq.ROUTER, curve=self.gate.server("router"))
        self.router.bind(config.catalog.endpoint.bind)
        self.bus = Publisher(ctx, config.broker.xsub.connect, "catalog", NodeKind.CATALOG,
                             config.heartbeat.interval_ms, curve=self.gate.client("broker"))
        self.loop.add(self.router, self.on_requests)
        self.loop.watch(self.router, "router", self.on_router_event)
        self.loop.watch(self.bus.sock, "bus", self.on_socket_event)
        self.replicas: dict[int, zmq.Socket] = {}
        self.replica_by_endpoint: dict[str, int] = {}
        for replica in config.orders:
            sock = sockets.make_socket(ctx, zmq.DEALER, immediate=True, identity="catalog",
                                       curve=self.gate.client(replica.name))
            sock.connect(replica.endpoint.connect)
            self.replicas[replica.id] = sock
            self.replica_by_endpoint[replica.endpoint.connect] = replica.id
            self.loop.add(sock, lambda sock=sock, rid=replica.id: self.on_replica(rid, sock))
            self.loop.watch(sock, f"order-{replica.id}", self.on_replica_event)
        self.beat = Ticker(config.heartbeat.interval_s, now)
        self.counters = Counters()
        self.progress = (now, self.projection.book.applied)  # when and where progress was last logged
        book = self.projection.book
        log.info("catalog ready", endpoint=config.catalog.endpoint.bind, stocks=len(book.stocks),
                 applied=book.applied, blank=not book.started)

    def run(self) -> None:
        self.execute(self.projection.start(time.monotonic()))
        serve(self.loop, self.bus, self.tick, self.store.close,
              StartedEvent(self.bus.node, applied=self.projection.book.applied))

    def tick(self, now: float) -> float:
        self.execute(self.projection.tick(now))
        if self.storage.probe_due(now):
            self._probe_storage(now)
        if self.beat.due(now):
            self.bus.heartbeat(self.status())
        deadline = self.projection.next_deadline()
        wait = self.beat.remaining(now)
        return wait if deadline is None else max(0.0, min(wait, deadline - now))

    def status(self) -> CatalogStatus:
        p, c = self.projection, self.counters
        return CatalogStatus(applied=p.book.applied, commit=p.commit, lookups=c.lookups,
                             trades=p.applied_trades, bad_requests=c.bad_requests, behind=c.behind,
                             source=p.source, auth=self.gate.status(),
                             storage=self.storage.state, storage_detail=self.storage.detail)

    # --- inputs -------------------------------------------------------------------

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        self.bus.event(SocketEvent(self.bus.node, socket=label, event=event, endpoint=endpoint))

    def on_router_event(self, label: str, event: str, endpoint: str) -> None:
        self.gate.on_socket_event(label, event, endpoint)
        self.on_socket_event(label, event, endpoint)

    def on_replica_event(self, label: str, event: str, endpoint: str) -> None:
        self.on_socket_event(label, event, endpoint)
        replica = self.replica_by_endpoint.get(endpoint)
        if replica is None:
            return
        if event == "disconnected":
            self.execute(self.projection.replica_down(replica, time.monotonic()))
        elif event == "handshake_succeeded":
            self.execute(self.projection.replica_up(replica, time.monotonic()))

    def on_requests(self) -> None:
        """Answer every lookup waiting on the router."""
        now = time.monotonic()
        for got in rpc.pending_requests(self.router, DRAIN_LIMIT):
            if got is None:
                self.counters.bad_requests += 1
                continue
            envelope, msg = got
            if isinstance(msg, RemoteProtocolError):
                self.counters.bad_requests += 1
                log.warning("bad request", error=str(msg))
                rpc.send_reply(self.router, envelope, Error(error_code(msg), str(msg)))
            elif isinstance(msg, Lookup):
                self.counters.lookups += 1
                self.execute(self.projection.on_lookup(envelope, msg, now))
            else:
                self.counters.bad_requests += 1
                rpc.send_reply(self.router, envelope, Error(
                    ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not a catalog request (the catalog answers lookups)"))

    def on_replica(self, replica: int, sock: zmq.Socket) -> None:
        for _ in range(DRAIN_LIMIT):
            if not readable(sock):
                return
            frames = sock.recv_multipart(zmq.NOBLOCK)
            try:
                msg = codec.decode(frames[-1])
            except RemoteProtocolError as exc:
                log.warning("bad reply from an order replica", replica=replica, error=str(exc))
                continue
            if isinstance(msg, CommittedEntries):
                now = time.monotonic()
                try:
                    outputs = self.projection.on_entries(replica, msg, now)
                except StorageFailed as exc:
                    self.bus.event(StorageEvent("catalog", state="failed", detail=str(exc)), warn=True)
                    raise RestartFromDisk(str(exc), []) from None
                self.execute(outputs)
                self._log_progress(now)
            elif isinstance(msg, Error):
                log.warning("an order replica refused a fetch", replica=replica, error=msg.message)

    # --- outputs ------------------------------------------------------------------

    def execute(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Reply):
                if isinstance(out.msg, Error) and out.msg.code == ErrorCode.BEHIND:
                    self.counters.behind += 1
                rpc.send_reply(self.router, out.ref, out.msg)
            elif isinstance(out, ToReplica):
                try:
                    self.replicas[out.replica].send_multipart([b"", codec.encode(out.msg)], zmq.NOBLOCK)
                except zmq.Again:  # no connection to it (ZMQ_IMMEDIATE): another replica, shortly
                    self.execute(self.projection.send_failed(out.replica, time.monotonic()))
            elif isinstance(out, Publish):  # even a run that changed no stock: the chain must not break
                self.bus.publish(Topic.STOCK, out.msg)
            elif isinstance(out, CaughtUp):
                log.info("caught up with the order log", index=out.index)
                self.bus.event(CaughtUpEvent("catalog", index=out.index, leader=self.projection.source))
            elif isinstance(out, Refused):
                self._storage_full(out.error)
            else:  # a new output type the shell was not taught: a bug, never to be dropped silently
                raise TypeError(f"the catalog cannot carry out {out!r}")

    # --- internals ----------------------------------------------------------------

    def _log_progress(self, now: float) -> None:
        p = self.projection
        then, was = self.progress
        if p.book.applied >= p.commit or now - then < PROGRESS_EVERY_S:
            return
        rate = (p.book.applied - was) / (now - then)
        left = (p.commit - p.book.applied) / rate if rate > 0 else float("inf")
        log.info("catching up with the order log", applied=p.book.applied, commit=p.commit,
                 percent=round(100 * p.book.applied / max(1, p.commit), 1), entries_per_s=round(rate),
                 eta_s=round(left, 1) if left != float("inf") else None, source=f"order-{p.source}")
        self.progress = (now, p.book.applied)

    def _storage_full(self, exc: StorageFull) -> None:
        if self.storage.full(exc, time.monotonic()):
            self.bus.event(StorageEvent("catalog", state="full", detail=str(exc)), warn=True)

    def _probe_storage(self, now: float) -> None:
        """The disk was full: try a small write (the table's index again)."""
        book = self.projection.book
        try:
            self.store.commit([], book.applied, book.last_txn)
        except StorageFull as exc:
            self.storage.full(exc, now)
            return
        except StorageFailed as exc:
            raise RestartFromDisk(str(exc), []) from None
        self.storage.recovered()
        self.bus.event(StorageEvent("catalog", state="ok", detail=f"{self.store.path} takes writes again"))
        self.execute(self.projection.storage_recovered(now))
