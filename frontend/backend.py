"""The frontend's way to the catalog and the order replicas, over ZeroMQ.

:class:`Backend` is shared by every request handler (greenlet) of the
frontend. It keeps one :class:`frontend.channel.Channel` (a DEALER) per
backend, on which every handler's requests are in flight at once, each
matched to its reply by a request id.

Lookups go to the cache first, then to the catalog, then to the order
replicas (the leader first), which hold the same stocks as the fold of
their committed log. A lookup never shows an older state of a stock than
this frontend has already shown (``shown``: the highest version of each
stock it answered with, its own trades included): the cache serves only an
entry at least that new, and the catalog and the replicas are asked for
that version or later (``Lookup.min_index``), answering ``behind`` when
they have not reached it. A catalog that does not answer, or that the bus
says is silent, is left alone for :data:`CATALOG_REST_S`: lookups go
straight to the replicas meanwhile, so a dead catalog costs them nothing.

Trades and order queries go to the replica the :class:`LeaderTracker`
believes leads; on ``not_leader``, on a closed connection, on a timeout,
or as soon as the bus announces another leader while a request waits, the
same request (same request id, so it is never applied twice) goes to the
next candidate, until ``trade_deadline_ms`` runs out and the caller gets
:class:`Unavailable` (HTTP 503). The trade carries that deadline: a leader
that has not proposed it by then drops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from common.config import Config
from common.errors import NotLeader, PeerUnavailable, RemoteError, RemoteProtocolError, RpcTimeout
from common.logs import get_logger
from common.protocol import (
    BackendStatus, ErrorCode, GetOrder, Lookup, Message, OrderInfo, PlaceTrade, StockInfo, TradeDone,
)
from common.security import NodeKeys

from .cache import Cached, LookupCache
from .channel import POLL_SLICE_S, Channel
from .leader import LeaderTracker

log = get_logger(__name__)

# A replica that cannot take a connection this fast is skipped for another.
CONNECT_S = 0.25
# How long to wait for news of a leader when no replica knows one.
LEADER_WAIT_S = 0.05
# After the catalog failed to answer, lookups skip it this long.
CATALOG_REST_S = 1.0
# How long to wait before asking the replicas again when every one was behind.
BEHIND_WAIT_S = 0.01
# Test-only failpoints (``--failpoint``), for fault tests.
FAILPOINTS = ("slow-lookup-install",)
SLOW_INSTALL_S = 0.02


class Unavailable(Exception):
    """A backend did not answer in time; the HTTP answer is 503.

    :param outcome_unknown: a trade was sent and may have been carried out.
    """

    def __init__(self, message: str, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.outcome_unknown = outcome_unknown


@dataclass
class Counters:
    """The backend calls counted since the frontend started (:meth:`Backend.status`)."""

    catalog_calls: int = 0
    order_calls: int = 0
    replica_lookups: int = 0  # lookups answered by an order replica (the catalog down or behind)
    retries: int = 0
    unavailable: int = 0
    timeouts: int = 0  # attempts sent that got no reply in time (a subset of retries)


class Backend:
    """Shared by all request handlers; the lock guards the cache and tracker."""

    def __init__(self, config: Config, ctx: zmq.Context, cache: LookupCache | None, tracker: LeaderTracker,
                 lock: threading.Lock, failpoint: str | None = None,
                 watch: Callable[[zmq.Socket, str], None] | None = None,
                 channel: Callable[[str, str], Channel] | None = None, keys: NodeKeys | None = None,
                 catalog_alive: Callable[[], bool] | None = None) -> None:
        """:param watch: ``watch(socket, label)`` attaches the socket monitor to
        each backend's socket (the bus watcher reports the events).
        :param catalog_alive: whether the bus still hears the catalog (None: assume so).
        :param channel: ``channel(endpoint, label)`` opens the way to one
        backend (default: a :class:`Channel`; tests pass fakes).
        :param keys: the frontend's CURVE keys (None: plain sockets); a
        channel's label names the node whose public key it expects."""
        self.timeouts = config.timeouts

        def open_channel(endpoint: str, label: str) -> Channel:
            return Channel(ctx, endpoint, None if watch is None else (lambda sock: watch(sock, label)),
                           curve=None if keys is None else keys.client(label))

        opener = channel or open_channel
        self.catalog = opener(config.catalog.endpoint.connect, "catalog")
        self.replicas = {r.id: opener(r.endpoint.connect, r.name) for r in config.orders}
        self.cache = cache
        self.tracker = tracker
        self.lock = lock
        self.counters = Counters()
        self.failpoint = failpoint
        self.catalog_alive = catalog_alive or (lambda: True)
        self.catalog_rest_until = 0.0
        self.shown: dict[str, int] = {}  # stock -> the highest version shown to a client

    def status(self) -> BackendStatus:
        c = self.counters
        return BackendStatus(catalog_calls=c.catalog_calls, order_calls=c.order_calls, retries=c.retries,
                             unavailable=c.unavailable, timeouts=c.timeouts, replica_lookups=c.replica_lookups)

    def close(self) -> None:
        self.catalog.close()
        for channel in self.replicas.values():
            channel.close()

    # --- lookups --------------------------------------------------------------

    def lookup(self, name: str) -> Cached:
        """The stock, from the cache if it may be trusted, else from the
        catalog, else from the order replicas; never older than what this
        frontend has shown of it.

        :raises RemoteError: ``stock_not_found``.
        :raises Unavailable: no node could answer.
        """
        with self.lock:
            floor = self.shown.get(name, 0)
            hit = self.cache.get(name) if self.cache is not None else None
            if hit is not None and hit.version >= floor:
                self._show(hit.name, hit.version)
                return hit
        msg = Lookup(name, min_index=floor)
        info = self._ask_catalog(msg)
        if info is None:
            info = self._ask_replicas(msg)
        if self.failpoint == "slow-lookup-install":
            time.sleep(SLOW_INSTALL_S)  # test hook: widen the race with invalidations
        with self.lock:
            if self.cache is not None:
                self.cache.install(info)
            self._show(info.name, info.version)
        return Cached(info.name, info.price, info.quantity, info.version)

    def _ask_catalog(self, msg: Lookup) -> StockInfo | None:
        """The catalog's answer, or None when it is behind, silent or resting."""
        now = time.monotonic()
        if now < self.catalog_rest_until or not self.catalog_alive():
            return None
        self.counters.catalog_calls += 1
        timeout_s = self.timeouts.request_ms / 1000
        try:
            reply = self.catalog.request(msg, timeout_s, connect_s=min(CONNECT_S, timeout_s))
        except RemoteError as exc:
            if exc.code == ErrorCode.BEHIND:
                return None
            raise
        except (PeerUnavailable, RpcTimeout, RemoteProtocolError) as exc:
            log.warning("catalog did not answer; lookups go to the order replicas", error=str(exc),
                        rest_s=CATALOG_REST_S)
            self.counters.retries += 1
            if isinstance(exc, RpcTimeout):
                self.counters.timeouts += 1
            self.catalog_rest_until = time.monotonic() + CATALOG_REST_S
            return None
        if isinstance(reply, StockInfo):
            return reply if reply.index >= msg.min_index else None  # never older than asked, whoever says so
        raise RemoteError(ErrorCode.BAD_REQUEST, f"unexpected reply {reply.MSG!r} from the catalog")

    def _ask_replicas(self, msg: Lookup) -> StockInfo:
        """An order replica's answer: the leader's first (its book is the
        freshest), then the others', until ``lookup_attempts`` request
        timeouts have passed."""
        request_s = self.timeouts.request_ms / 1000
        total = self.timeouts.request_ms * self.timeouts.lookup_attempts / 1000
        deadline = time.monotonic() + total
        heard = ""
        while True:
            with self.lock:
                candidates = self.tracker.candidates()
            for target in candidates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.counters.order_calls += 1
                try:
                    reply = self.replicas[target].request(msg, min(request_s, remaining),
                                                          connect_s=min(CONNECT_S, remaining))
                except RemoteError as exc:
                    if exc.code != ErrorCode.BEHIND:
                        raise
                    heard = f" (last: {exc.message})"
                    continue
                except (PeerUnavailable, RpcTimeout, RemoteProtocolError):
                    self.counters.retries += 1
                    continue
                if isinstance(reply, StockInfo) and reply.index >= msg.min_index:
                    self.counters.replica_lookups += 1
                    return reply
                if isinstance(reply, StockInfo):
                    continue
                raise RemoteError(ErrorCode.BAD_REQUEST, f"unexpected reply {reply.MSG!r} from a replica")
            if time.monotonic() + BEHIND_WAIT_S >= deadline:
                self.counters.unavailable += 1
                raise Unavailable(f"neither the catalog nor an order replica could answer within {total:g}s"
                                  f"{heard}; try again")
            time.sleep(BEHIND_WAIT_S)

    def _show(self, name: str, version: int) -> None:
        """A client is shown ``name`` at ``version``: no lookup may show an older one (hold the lock)."""
        if version > self.shown.get(name, 0):
            self.shown[name] = version

    # --- orders ---------------------------------------------------------------

    def trade(self, request_id: str, name: str, quantity: int, side: str,
              trace: dict[str, float] | None = None) -> TradeDone:
        """Place a trade on the order leader, retrying with the same request id.

        :param trace: if given, the trade is traced (:mod:`common.trace`): its
            timestamps, the frontend's and the backends', are added to it.
        :raises RemoteError: ``stock_not_found``, ``not_enough_stock``, ``key_reused``.
        :raises Unavailable: no leader answered before the trade deadline.
        """
        if trace is not None:
            trace["fe_sent"] = time.monotonic()
        deadline_ms = int((time.time() + self.timeouts.trade_deadline_ms / 1000) * 1000)
        reply = self._ask_leader(PlaceTrade(request_id, name, quantity, side, deadline_ms=deadline_ms,
                                            trace=trace is not None))
        if trace is not None:
            trace["fe_reply"] = time.monotonic()
            trace.update(reply.trace or {})
        with self.lock:  # read your writes: what the trade left is shown from now on
            if self.cache is not None:
                self.cache.on_trade(reply.stock, name)
            if reply.stock is not None:
                self._show(reply.stock.name, reply.stock.version)
        return reply

    def order(self, txn: int) -> OrderInfo:
        """A committed order by transaction number: from the leader, or, when
        it does not answer (an election, a full disk, a hung leader), from any
        replica that knows the entry is committed (a committed entry never
        changes). Each replica is asked in turn; only the leader says "no
        such order" (once it has confirmed it still leads), so an
        acknowledged trade is never answered "does not exist".

        :raises RemoteError: ``order_not_found``.
        :raises Unavailable: no replica could answer in time.
        """
        msg = GetOrder(txn)
        deadline = time.monotonic() + self.timeouts.trade_deadline_ms / 1000
        request_s = self.timeouts.request_ms / 1000
        asked: dict[int, int] = {}  # replica -> the tracker's version when it was asked, this round
        silent: dict[int, int] = {}  # replica -> the epoch in which it did not answer this call
        heard = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.counters.unavailable += 1
                raise Unavailable(f"no order replica could answer within {self.timeouts.trade_deadline_ms / 1000:g}s"
                                  f"{heard}; try again")
            with self.lock:
                version, leader = self.tracker.version, self.tracker.leader
                # Each replica once a round, the leader first; and a leader announced since it was asked, again.
                ring = [r for r in self.tracker.candidates()
                        if r not in asked or (r == leader and asked[r] < version and r not in silent)]
            if not ring:  # every replica asked: a moment for news of a leader, then another round
                asked.clear()
                self._wait_for_news(version, min(LEADER_WAIT_S, remaining))
                continue
            target = ring[0]
            asked[target] = version

            def news(version=version, target=target) -> bool:  # a leader announced meanwhile: ask it instead
                return self.tracker.version != version and self.tracker.leader not in (None, target)

            self.counters.order_calls += 1
            try:
                return self.replicas[target].request(msg, min(request_s, remaining), cancel=news,
                                                     connect_s=min(CONNECT_S, remaining))
            except NotLeader as exc:  # a replica that does not know the entry committed, or no leader
                if "(" in exc.message:
                    heard = f" (last: {exc.message})"
                epoch = exc.epoch or 0
                if silent.get(exc.leader_hint, -1) < epoch:  # not a hint at a leader that just failed us
                    with self.lock:
                        self.tracker.announce(exc.leader_hint, epoch)
            except (PeerUnavailable, RpcTimeout) as exc:
                if isinstance(exc, RpcTimeout) and news():
                    continue  # cut short by news of a leader, not silent
                if isinstance(exc, RpcTimeout):
                    self.counters.timeouts += 1
                with self.lock:
                    silent[target] = self.tracker.epoch
                    self.tracker.failed(target)
            except RemoteError as exc:
                if exc.code not in (ErrorCode.UNAVAILABLE, ErrorCode.STORAGE):
                    raise
                heard = f" (last: {exc.message})"
            except RemoteProtocolError as exc:
                log.warning("bad reply from an order replica", replica=target, error=str(exc))
            self.counters.retries += 1

    def _ask_leader(self, msg: PlaceTrade):
        deadline = time.monotonic() + self.timeouts.trade_deadline_ms / 1000
        request_s = self.timeouts.request_ms / 1000
        sent = False
        rotation = 0
        heard = ""  # what the replicas last said, for the 503 (a full disk, say)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.counters.unavailable += 1
                what = "the trade may or may not have happened; retry with the same Idempotency-Key" \
                    if sent else "try again"
                raise Unavailable(f"no order leader answered within {self.timeouts.trade_deadline_ms / 1000:g}s"
                                  f"{heard}; {what}", outcome_unknown=sent)
            with self.lock:
                version = self.tracker.version
                candidates = self.tracker.candidates()
                known = self.tracker.leader is not None
            target = candidates[0] if known else candidates[rotation % len(candidates)]
            rotation += 0 if known else 1

            def leader_moved(target=target, version=version) -> bool:
                return self.tracker.version != version and self.tracker.leader not in (None, target)

            self.counters.order_calls += 1
            try:
                return self.replicas[target].request(msg, min(request_s, remaining), cancel=leader_moved,
                                                     connect_s=min(CONNECT_S, remaining))
            except NotLeader as exc:
                if "(" in exc.message:  # a replica that says why it cannot lead
                    heard = f" (last: {exc.message})"
                with self.lock:
                    if not self.tracker.announce(exc.leader_hint, exc.epoch or 0):
                        self.tracker.failed(target)
                if exc.leader_hint is None:
                    self._wait_for_news(version, min(LEADER_WAIT_S, remaining))
            except PeerUnavailable:
                with self.lock:
                    self.tracker.failed(target)
            except RpcTimeout:
                sent = True
                if not leader_moved():  # a real timeout, not a wait cut short by news of a new leader
                    self.counters.timeouts += 1
                    with self.lock:
                        self.tracker.failed(target)
            except RemoteError as exc:
                if exc.code == ErrorCode.STORAGE:  # not carried out: a disk is full, and the message says where
                    self.counters.unavailable += 1
                    raise Unavailable(f"{exc.message}; the trade was not carried out, retry later") from None
                if exc.code == ErrorCode.DEADLINE:  # the leader got it too late, and dropped it
                    self.counters.unavailable += 1
                    raise Unavailable(f"{exc.message}; retry") from None
                if exc.code != ErrorCode.UNAVAILABLE:
                    raise
                sent = True
                self._wait_for_news(version, min(LEADER_WAIT_S, remaining))
            except RemoteProtocolError as exc:
                sent = True  # it reached the replica: whatever it did, the reply does not say
                log.warning("bad reply from an order replica", replica=target, error=str(exc))
            self.counters.retries += 1

    def _wait_for_news(self, version: int, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while self.tracker.version == version and time.monotonic() < end:
            time.sleep(POLL_SLICE_S)
