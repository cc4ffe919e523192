"""Heartbeats and failure detection, as pure state machines.

Nothing here reads a clock or touches a socket: every method takes ``now``
(seconds, monotonic) and the I/O loops pass it in. Any message from a peer
counts as a heartbeat (``Liveness.heard``), as the Paranoid Pirate pattern of
the ZeroMQ guide recommends.

:class:`Liveness` states, per peer::

    unknown --heard--> alive --silent for window_s--> dead --heard--> alive
                        |                                  ^
                        +-- heard with a new incarnation --+ (reported as restarted)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Ticker:
    """Says when a periodic action is due, keeping a steady cadence.

    :param interval_s: the period, in seconds.
    :param now: the current time; the first tick is due at once.
    """

    def __init__(self, interval_s: float, now: float) -> None:
        self.interval_s = interval_s
        self.next_at = now

    def due(self, now: float) -> bool:
        """True (and schedules the next tick) when a tick is due."""
        if now < self.next_at:
            return False
        self.next_at += self.interval_s
        if self.next_at <= now:  # we fell behind: do not burst to catch up
            self.next_at = now + self.interval_s
        return True

    def remaining(self, now: float) -> float:
        return max(0.0, self.next_at - now)


@dataclass
class PeerState:
    last_heard: float
    incarnation: str | None
    alive: bool


class Liveness:
    """Tracks which peers are alive from when each was last heard.

    :param window_s: silence longer than this means dead (interval x liveness).
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._peers: dict[str, PeerState] = {}

    def heard(self, node: str, now: float, incarnation: str | None = None) -> str | None:
        """Record traffic from ``node``.

        :returns: ``"new"`` for a first sighting, ``"back"`` when a dead node
            speaks again, ``"restarted"`` when its incarnation changed, else None.
        """
        peer = self._peers.get(node)
        if peer is None:
            self._peers[node] = PeerState(now, incarnation, True)
            return "new"
        change = None
        if not peer.alive:
            change = "back"
        elif incarnation is not None and peer.incarnation not in (None, incarnation):
            change = "restarted"
        peer.last_heard = max(peer.last_heard, now)
        peer.alive = True
        if incarnation is not None:
            peer.incarnation = incarnation
        return change

    def expire(self, now: float) -> list[str]:
        """Mark silent peers dead.

        :returns: the peers that died since the last call.
        """
        died = []
        for node, peer in self._peers.items():
            if peer.alive and now - peer.last_heard > self.window_s:
                peer.alive = False
                died.append(node)
        return died

    def mark_dead(self, node: str) -> bool:
        """Take ``node`` as dead at once (its connection closed).

        :returns: True if it was alive until now.
        """
        peer = self._peers.get(node)
        if peer is None or not peer.alive:
            return False
        peer.alive = False
        return True

    def is_alive(self, node: str, now: float) -> bool:
        peer = self._peers.get(node)
        return peer is not None and peer.alive and now - peer.last_heard <= self.window_s

    def age(self, node: str, now: float) -> float:
        """Seconds since ``node`` was last heard (infinity if never)."""
        peer = self._peers.get(node)
        return math.inf if peer is None else now - peer.last_heard

    def incarnation(self, node: str) -> str | None:
        peer = self._peers.get(node)
        return None if peer is None else peer.incarnation

    def nodes(self) -> list[str]:
        return sorted(self._peers)
