"""The frontend's ear on the bus: one background greenlet that owns the
frontend's SUB and PUB sockets (waiting through gevent, :mod:`frontend.greenwait`).

It feeds stock changes and heartbeats to the :class:`LookupCache`, leader
announcements to the :class:`LeaderTracker`, watches the SUB socket's
connection to the broker with the socket monitor (a closed connection flushes
the cache at once), and publishes the frontend's own heartbeat, with its
cache and request figures, for the monitor.

It also reads the socket monitors of the backend channels' DEALER sockets
(:meth:`BusWatcher.adopt`, :mod:`frontend.channel`), and reports each
backend's connection only when it changes (up, down or refused), not at
every reconnection attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import zmq

from common import sockets
from common.bus import Publisher, Subscriber
from common.config import Config
from common.heartbeat import Liveness, Ticker
from common.logs import get_logger
from common.protocol import (
    CacheFlushedEvent, FrontendStatus, Heartbeat, LeaderAnnouncement, NodeKind, SocketEvent, StartedEvent,
    StockChanges, StoppingEvent, Topic,
)

from . import greenwait
from .cache import LookupCache
from .leader import LeaderTracker

log = get_logger(__name__)


class BusWatcher:
    """Runs until :meth:`stop`.

    :param status: returns the figures to put in each heartbeat.
    """

    def __init__(self, config: Config, ctx: zmq.Context, name: str, cache: LookupCache | None,
                 tracker: LeaderTracker, lock: threading.Lock, status: Callable[[], FrontendStatus],
                 curve: sockets.CurveClient | None = None) -> None:
        """:param curve: the CURVE keys of the bus sockets (the broker's public key among them)."""
        self.config = config
        self.curve = curve
        self.ctx = ctx
        self.name = name
        self.cache = cache
        self.tracker = tracker
        self.lock = lock
        self.status = status
        self.nodes = Liveness(config.heartbeat.window_s)
        self._adopted: list[tuple[zmq.Socket, str]] = []
        self._links: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def adopt(self, sock: zmq.Socket, label: str) -> None:
        """Watch a backend channel's new DEALER socket to backend ``label``
        (called before it connects, from any greenlet)."""
        monitor = sockets.watch(sock)
        with self.lock:
            self._adopted.append((monitor, label))

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a dead watcher would silently freeze the cache: say so loudly
            log.exception("bus watcher crashed; the cache stays off")
            if self.cache is not None:
                with self.lock:
                    self.cache.bus_disconnected()

    def _loop(self) -> None:
        hb = self.config.heartbeat
        # Without a cache the stock changes concern nobody here: do not even receive them.
        topics = (Topic.HEARTBEAT, Topic.LEADER) + ((Topic.STOCK,) if self.cache is not None else ())
        sub = Subscriber(self.ctx, self.config.broker.xpub.connect, topics, connect=False, curve=self.curve)
        pub = Publisher(self.ctx, self.config.broker.xsub.connect, self.name, NodeKind.FRONTEND, hb.interval_ms,
                        curve=self.curve)
        monitors = {sockets.watch(sub.sock): "sub", sockets.watch(pub.sock): "bus"}
        watched = greenwait.SocketSet()
        for sock in (sub.sock, *monitors):
            watched.add(sock)
        sub.connect()
        beat = Ticker(hb.interval_s, time.monotonic())
        pub.event(StartedEvent(self.name, cache=self.cache is not None))
        flushes = 0
        try:
            while not self._stop.is_set():
                with self.lock:
                    adopted, self._adopted = self._adopted, []
                for monitor, label in adopted:
                    monitors[monitor] = label
                    watched.add(monitor)
                events = set(watched.wait(beat.remaining(time.monotonic())))
                now = time.monotonic()
                if sub.sock in events:
                    self._drain(sub, now)
                for monitor, label in list(monitors.items()):
                    if monitor in events and self._socket_events(monitor, label, pub):
                        del monitors[monitor]
                        watched.remove(monitor)
                        sockets.close(monitor)
                with self.lock:
                    if self.cache is not None:
                        self.cache.tick(now)
                        if self.cache.stats.flushes != flushes:
                            flushes = self.cache.stats.flushes
                            pub.event(CacheFlushedEvent(self.name, reason=self.cache.last_flush_reason,
                                                        flushes=flushes))
                    self.nodes.expire(now)
                if beat.due(now):
                    pub.heartbeat(self.status())
        finally:
            watched.close()
            pub.event(StoppingEvent(self.name))
            with self.lock:
                adopted, self._adopted = self._adopted, []
            for monitor in [*monitors, *(m for m, _ in adopted)]:
                sockets.close(monitor)
            sub.close()
            pub.close(linger_ms=100)

    def _drain(self, sub: Subscriber, now: float) -> None:
        messages = list(sub.drain())
        with self.lock:
            for _topic, msg in messages:
                if isinstance(msg, StockChanges):
                    if self.cache is not None:
                        self.cache.on_changes(msg)
                elif isinstance(msg, Heartbeat):
                    self.nodes.heard(msg.node, now, msg.incarnation)
                    if self.cache is not None:
                        self.cache.on_heartbeat(msg, now)
                elif isinstance(msg, LeaderAnnouncement):
                    if self.tracker.announce(msg.leader, msg.epoch):
                        log.info("leader changed", leader=msg.leader, epoch=msg.epoch)
                    if self.cache is not None:
                        self.cache.on_leader_commit(msg.commit, now)

    def _socket_events(self, monitor: zmq.Socket, label: str, pub: Publisher) -> bool:
        """Report what a monitor says. :returns: True once its socket closed."""
        for _ in range(100):
            if not monitor.get(zmq.EVENTS) & zmq.POLLIN:
                return False
            event, endpoint = sockets.read_event(monitor)
            if event == "monitor_stopped":
                return True
            if label in ("sub", "bus"):
                pub.event(SocketEvent(self.name, socket=label, event=event, endpoint=endpoint))
            else:  # a backend channel's DEALER: report the backend's state changes only
                state = {"connected": "up", "handshake_succeeded": "up", "disconnected": "down",
                         "handshake_failed": "refused", "handshake_failed_protocol": "refused",
                         "handshake_failed_auth": "refused"}.get(event)
                if state is not None and self._links.get((label, endpoint)) != state:
                    self._links[(label, endpoint)] = state
                    pub.event(SocketEvent(self.name, socket=f"dealer:{label}", event=event, endpoint=endpoint))
            if label == "sub" and event == "disconnected" and self.cache is not None:
                with self.lock:
                    self.cache.bus_disconnected()
        return False

    def catalog_alive(self) -> bool:
        """Whether the catalog's heartbeats still arrive (or none was ever
        expected yet: a frontend that just started assumes it is up)."""
        with self.lock:
            return "catalog" not in self.nodes.nodes() or self.nodes.is_alive("catalog", time.monotonic())

    def snapshot(self, now: float) -> dict[str, float]:
        """Seconds since each node's last heartbeat (``FrontendStatus.heard``)."""
        return {node: round(self.nodes.age(node, now), 3) for node in self.nodes.nodes()}
