"""The catalog's I/O loop: a ROUTER for requests, a PUB to the bus.

Requests are answered from a single thread, by the pure
:class:`catalog.rules.Catalog` over its SQLite store. Lookups are served from
memory; the trade batches waiting together are one SQLite transaction (group
commit), after which their changes are published (``stock`` topic, one
``stock_changes`` message) with their change numbers, then the batches are
answered. The heartbeat carries the last change number, so a
subscriber that missed the final change of a burst still sees the gap.

The ROUTER is a CURVE server: the catalog's ZAP handler (:class:`common.security.Gate`,
served by the same loop) lets in only the cluster's keys, and its heartbeat
counts the refusals.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from common import rpc, security, sockets
from common.bus import Publisher
from common.config import Config
from common.errors import RemoteProtocolError, StorageFailed, StorageFull, error_code
from common.heartbeat import Ticker
from common.logs import get_logger
from common.node import DRAIN_LIMIT, Loop, RestartFromDisk, serve
from common.storage import Faults, StorageState
from common.protocol import (
    ApplyTrades, CatalogStatus, Error, ErrorCode, Fence, Fenced, Lookup, Message, NodeKind, SocketEvent,
    StartedEvent, StockChanges, StorageEvent, Topic, TradesApplied,
)

from .rules import Catalog, Commit
from .store import SqliteCatalogStore

log = get_logger(__name__)


@dataclass
class Counters:
    """What the catalog counts since it started (its heartbeat's :class:`CatalogStatus`)."""

    lookups: int = 0
    trades: int = 0
    batches: int = 0
    bad_requests: int = 0


class CatalogServer:
    """The catalog node. Build it, then call :meth:`run` until ``stop`` is set."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: threading.Event, now: float,
                 storage_faults: Path | None = None, distrust_after: tuple[int, int] | None = None) -> None:
        """:param storage_faults: a trigger file for injected storage failures (fault tests only).
        :param distrust_after: ``(seq, rowid)``: undo what was journaled after it first (a restart after a
            failed fsync).
        :raises StorageCorrupt: the catalog's data cannot be trusted (it says what to do).
        """
        self.config = config
        keys = security.node_keys(config, "catalog")  # missing keys stop the node before it touches its data
        path = config.data_dir / "catalog.sqlite3"
        self.store = SqliteCatalogStore(path, config.catalog.stocks_csv, cluster_id=config.cluster_id,
                                        faults=Faults(storage_faults), distrust_after=distrust_after)
        self.storage = StorageState(path)
        self.catalog = Catalog(self.store)
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
        self.beat = Ticker(config.heartbeat.interval_s, now)
        self.counters = Counters()
        log.info("catalog ready", endpoint=config.catalog.endpoint.bind, stocks=len(self.catalog.stocks),
                 seq=self.catalog.seq, fence=self.catalog.fence)

    def run(self) -> None:
        serve(self.loop, self.bus, self.tick, self.store.close, StartedEvent(self.bus.node, seq=self.catalog.seq))

    def tick(self, now: float) -> float:
        if self.storage.probe_due(now):
            self._probe_storage(now)
        if self.beat.due(now):
            self.bus.heartbeat(self.status())
        return self.beat.remaining(now)

    def status(self) -> CatalogStatus:
        c = self.counters
        return CatalogStatus(seq=self.catalog.seq, fence=self.catalog.fence, lookups=c.lookups, trades=c.trades,
                             batches=c.batches, bad_requests=c.bad_requests, auth=self.gate.status(),
                             storage=self.storage.state, storage_detail=self.storage.detail)

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        self.bus.event(SocketEvent(self.bus.node, socket=label, event=event, endpoint=endpoint))

    def on_router_event(self, label: str, event: str, endpoint: str) -> None:
        self.gate.on_socket_event(label, event, endpoint)
        self.on_socket_event(label, event, endpoint)

    def on_requests(self) -> None:
        """Answer every request waiting on the router. Trade batches that
        arrived together share one commit (:meth:`Catalog.handle_all`), and
        what they changed is published as one bus message, before the
        replies go out."""
        received = time.monotonic()
        batch: list[tuple[list[bytes], Message]] = []
        for got in rpc.pending_requests(self.router, DRAIN_LIMIT):
            if got is None:
                self.counters.bad_requests += 1
                continue
            envelope, msg = got
            if isinstance(msg, RemoteProtocolError):
                self.counters.bad_requests += 1
                log.warning("bad request", error=str(msg))
                rpc.send_reply(self.router, envelope, Error(error_code(msg), str(msg)))
                continue
            batch.append((envelope, msg))
        if not batch:
            return
        msgs = [msg for _, msg in batch]
        try:
            answers = self.catalog.handle_all(msgs)
        except StorageFailed as exc:
            self.bus.event(StorageEvent("catalog", state="failed", detail=str(exc)), warn=True)
            seq, rowid = self.store.synced
            raise RestartFromDisk(str(exc), ["--distrust-after", f"{seq}:{rowid}"]) from None
        committed = time.monotonic()
        if answers.full is not None and self.storage.full(answers.full, committed):
            self.bus.event(StorageEvent("catalog", state="full", detail=str(answers.full)), warn=True)
        replies = answers.replies
        for msg, reply in zip(msgs, replies):
            self._count(msg, reply)
        if answers.changes:
            self.bus.publish(Topic.STOCK, StockChanges(answers.changes))
        published = time.monotonic()
        for (envelope, msg), reply in zip(batch, replies):
            if isinstance(msg, ApplyTrades) and msg.trace and isinstance(reply, TradesApplied):
                reply = dataclasses.replace(reply, trace=[received, committed, published])
            rpc.send_reply(self.router, envelope, reply)

    def _probe_storage(self, now: float) -> None:
        """The disk was full: try a small write (the table's figures again)."""
        try:
            self.store.commit(Commit(fence=self.catalog.fence, seq=self.catalog.seq))
        except StorageFull as exc:
            self.storage.full(exc, now)
            return
        except StorageFailed as exc:
            seq, rowid = self.store.synced
            raise RestartFromDisk(str(exc), ["--distrust-after", f"{seq}:{rowid}"]) from None
        self.storage.recovered()
        self.bus.event(StorageEvent("catalog", state="ok", detail=f"{self.store.path} takes writes again"))

    def _count(self, msg: Message, reply: Message) -> None:
        if isinstance(msg, Lookup):
            self.counters.lookups += 1
        elif isinstance(reply, Error) and reply.code == ErrorCode.STALE_EPOCH:
            log.info("refused a deposed leader", request=msg.MSG, epoch=getattr(msg, "epoch", None),
                     fence=reply.epoch)
        elif isinstance(reply, Error) and reply.code == ErrorCode.BAD_REQUEST:
            self.counters.bad_requests += 1
        elif isinstance(msg, ApplyTrades):
            self.counters.batches += 1
            self.counters.trades += len(msg.trades)
        elif isinstance(reply, Fenced) and isinstance(msg, Fence):
            log.info("fenced", epoch=msg.epoch, after_seq=msg.after_seq, returned=len(reply.entries),
                     more=reply.more)
