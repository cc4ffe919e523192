"""The catalog's I/O loop: a ROUTER for requests, a PUB to the bus.

Requests are answered one at a time from a single thread. Lookups are served
from memory; a batch of trades is one SQLite transaction, after which every
changed stock is published (``stock`` topic) with its change number, then the
batch is answered. The heartbeat carries the last change number, so a
subscriber that missed the final change of a burst still sees the gap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zmq

from common import rpc, sockets
from common.bus import Publisher
from common.config import Config
from common.errors import RemoteProtocolError, error_code
from common.heartbeat import Ticker
from common.logs import get_logger
from common.node import DRAIN_LIMIT, Loop, serve
from common.protocol import (
    ApplyTrades, CatalogStatus, Error, ErrorCode, Fence, Fenced, Lookup, Message, NodeKind, SocketEvent,
    StartedEvent, StockChanged, Topic, TradesApplied, trade_problem,
)

from .store import CatalogStore, StaleEpoch

log = get_logger(__name__)

FENCE_PAGE_MAX = 1000


@dataclass
class Counters:
    """What the catalog counts since it started (its heartbeat's :class:`CatalogStatus`)."""

    lookups: int = 0
    trades: int = 0
    batches: int = 0
    bad_requests: int = 0


class CatalogServer:
    """The catalog node. Build it, then call :meth:`run` until ``stop`` is set."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: threading.Event, now: float) -> None:
        self.config = config
        self.store = CatalogStore(config.data_dir / "catalog.sqlite3", config.catalog.stocks_csv)
        self.loop = Loop(stop)
        self.router = sockets.make_socket(ctx, zmq.ROUTER)
        self.router.bind(config.catalog.endpoint.bind)
        self.bus = Publisher(ctx, config.broker.xsub.connect, "catalog", NodeKind.CATALOG,
                             config.heartbeat.interval_ms)
        self.loop.add(self.router, self.on_requests)
        self.loop.watch(self.router, "router", self.on_socket_event)
        self.loop.watch(self.bus.sock, "bus", self.on_socket_event)
        self.beat = Ticker(config.heartbeat.interval_s, now)
        self.counters = Counters()
        log.info("catalog ready", endpoint=config.catalog.endpoint.bind, stocks=len(self.store.stocks),
                 seq=self.store.seq, fence=self.store.fence)

    def run(self) -> None:
        serve(self.loop, self.bus, self.tick, self.store.close, StartedEvent(self.bus.node, seq=self.store.seq))

    def tick(self, now: float) -> float:
        if self.beat.due(now):
            self.bus.heartbeat(self.status())
        return self.beat.remaining(now)

    def status(self) -> CatalogStatus:
        c = self.counters
        return CatalogStatus(seq=self.store.seq, fence=self.store.fence, lookups=c.lookups, trades=c.trades,
                             batches=c.batches, bad_requests=c.bad_requests)

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        self.bus.event(SocketEvent(self.bus.node, socket=label, event=event, endpoint=endpoint))

    def on_requests(self) -> None:
        for got in rpc.pending_requests(self.router, DRAIN_LIMIT):
            if got is None:
                self.counters.bad_requests += 1
                continue
            envelope, msg = got
            rpc.send_reply(self.router, envelope, self.handle(msg))

    def handle(self, msg: Message | RemoteProtocolError) -> Message:
        """Answer one request (never raises on bad input)."""
        if isinstance(msg, RemoteProtocolError):
            self.counters.bad_requests += 1
            log.warning("bad request", error=str(msg))
            return Error(error_code(msg), str(msg))
        if isinstance(msg, Lookup):
            self.counters.lookups += 1
            info = self.store.lookup(msg.name)
            return info if info is not None else Error(ErrorCode.STOCK_NOT_FOUND, "stock not found")
        if isinstance(msg, ApplyTrades):
            return self.on_apply(msg)
        if isinstance(msg, Fence):
            return self.on_fence(msg)
        self.counters.bad_requests += 1
        return Error(ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not a catalog request")

    def on_apply(self, msg: ApplyTrades) -> Message:
        for item in msg.trades:
            problem = trade_problem(item.request_id, item.name, item.quantity, item.side)
            if problem:
                self.counters.bad_requests += 1
                return Error(ErrorCode.BAD_REQUEST, f"trade {item.request_id!r}: {problem}")
        try:
            applied = self.store.apply(msg.epoch, msg.trades)
        except StaleEpoch as exc:
            log.info("refused a deposed leader's trades", epoch=msg.epoch, fence=exc.fence)
            return Error(ErrorCode.STALE_EPOCH, f"epoch {msg.epoch} is fenced off", epoch=exc.fence)
        self.counters.batches += 1
        self.counters.trades += len(msg.trades)
        for stock, seq in applied.changes:
            self.bus.publish(Topic.STOCK, StockChanged(
                name=stock.name, price=stock.price, quantity=stock.quantity, version=stock.version, seq=seq,
            ))
        return TradesApplied(batch=msg.batch, outcomes=applied.outcomes)

    def on_fence(self, msg: Fence) -> Message:
        try:
            self.store.raise_fence(msg.epoch)
        except StaleEpoch as exc:
            return Error(ErrorCode.STALE_EPOCH, f"epoch {msg.epoch} is fenced off", epoch=exc.fence)
        entries, more = self.store.journal_after(msg.after_seq, max(1, min(msg.limit, FENCE_PAGE_MAX)))
        log.info("fenced", epoch=msg.epoch, after_seq=msg.after_seq, returned=len(entries), more=more)
        return Fenced(epoch=msg.epoch, entries=entries, more=more)
