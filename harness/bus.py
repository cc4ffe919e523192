"""A test's ear on the cluster's bus: every message, recorded with its time.

It listens with the cluster's ``tools`` key: the broker lets no one else in.

:class:`BusTap` runs a SUB socket on a background thread (the only thread that
touches it) and keeps what it heard, so tests can wait for a leader
announcement, a node event or a heartbeat instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TypeVar

import zmq

from common.bus import Subscriber
from common.protocol import Heartbeat, LeaderAnnouncement, Message, NodeEvent, Topic

from .cluster import Cluster, wait_until

E = TypeVar("E", bound=NodeEvent)


@dataclass
class Heard:
    at: float
    topic: Topic
    msg: Message


class BusTap:
    """Subscribe to the cluster's bus until :meth:`close`."""

    def __init__(self, cluster: Cluster) -> None:
        self.endpoint = cluster.endpoint("xpub")
        self.curve = cluster.curve("xpub")
        self.heard: list[Heard] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        ctx = zmq.Context()
        sub = Subscriber(ctx, self.endpoint, curve=self.curve)
        self._ready.set()
        try:
            while not self._stop.is_set():
                got = sub.recv(50)
                if got is not None:
                    with self.lock:
                        self.heard.append(Heard(time.monotonic(), got[0], got[1]))
        finally:
            sub.close()
            ctx.term()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> BusTap:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- queries ------------------------------------------------------------------

    def since(self, t: float) -> list[Heard]:
        with self.lock:
            return [h for h in self.heard if h.at >= t]

    def leader(self, since: float = 0.0) -> tuple[int, int] | None:
        """The newest ``(leader, epoch)`` announced since ``since``."""
        best = None
        for h in self.since(since):
            if isinstance(h.msg, LeaderAnnouncement) and (best is None or h.msg.epoch >= best[1]):
                best = (h.msg.leader, h.msg.epoch)
        return best

    def wait_leader(self, timeout: float = 10, since: float = 0.0, other_than: int | None = None,
                    min_epoch: int = 0) -> tuple[int, int]:
        def found():
            got = self.leader(since)
            if got and got[0] != other_than and got[1] >= min_epoch:
                return got
            return None

        return wait_until(found, timeout, f"a leader announcement (not {other_than}, epoch >= {min_epoch})")

    def events(self, kind: type[E], node: str | None = None, since: float = 0.0) -> list[E]:
        """The events of class ``kind`` (:class:`common.protocol.CaughtUpEvent`...) heard since ``since``."""
        return [h.msg for h in self.since(since) if isinstance(h.msg, kind) and (node is None or h.msg.node == node)]

    def wait_event(self, kind: type[E], node: str | None = None, since: float = 0.0, timeout: float = 10) -> E:
        return wait_until(lambda: (self.events(kind, node, since) or [None])[0], timeout,
                          f"event {kind.MSG} from {node or 'any node'}")

    def last_heartbeat(self, node: str) -> Heartbeat | None:
        with self.lock:
            for h in reversed(self.heard):
                if isinstance(h.msg, Heartbeat) and h.msg.node == node:
                    return h.msg
        return None
