"""The monitor's I/O loop: one SUB socket on the broker's XPUB, and the
socket monitor attached to it.

:class:`Listener` owns both sockets (and must stay in the thread that built
it). It polls them with a bounded timeout, passes what arrives to the pure
:class:`broker.monitor.state.MonitorState`, and hands the messages and the
state's conclusions to a :class:`Sink`: JSON lines
(:mod:`broker.monitor.jsonlines`) or the live view (:mod:`broker.monitor.view`).

The SUB socket reconnects by itself when the broker restarts; the socket
monitor's ``disconnected`` / ``connect_retried`` / ``handshake_succeeded``
events tell the state when the bus is gone and when it is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import zmq

from common import codec, sockets
from common.errors import RemoteProtocolError
from common.logs import get_logger
from common.protocol import Message, Topic

from .state import Derived, MonitorState

log = get_logger(__name__)

# The longest a poll may block: a stop request (Ctrl-C, SIGTERM) and the
# state's clock-driven judgements are never later than this.
MAX_WAIT_S = 0.1
# Messages read from one socket before the loop looks at the other one.
DRAIN_LIMIT = 1000
SUB_LABEL = "sub"


class OutputClosed(Exception):
    """The sink's reader went away (a closed pipe): stop listening."""


class Sink(Protocol):
    """Where the monitor's observations go."""

    def bus(self, topic: Topic, msg: Message, wall: float) -> None:
        """A bus message arrived (``wall``: Unix time)."""

    def socket(self, label: str, event: str, endpoint: str, wall: float) -> None:
        """The monitor's own socket reported an event."""

    def derived(self, events: list[Derived], wall: float) -> None:
        """The state concluded something."""

    def refresh(self, state: MonitorState, now: float, wall: float) -> None:
        """Called after every poll; redraw if it is time."""

    def wait_s(self, now: float) -> float:
        """How long until the sink wants :meth:`refresh` again."""


class Listener:
    """Listen to the bus at ``endpoint`` until ``stop`` is set.

    :param clock: monotonic seconds (the state's time).
    :param wall: Unix seconds (stamped on output).
    :param curve: the SUB socket's CURVE keys (the monitor's own and the
        broker's public key); None only with CURVE off.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, state: MonitorState, sink: Sink,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, curve: sockets.CurveClient | None = None) -> None:
        self.state = state
        self.sink = sink
        self.stop = stop
        self.clock = clock
        self.wall = wall
        # The monitor is attached before connecting, so that the first
        # "connected" (or "connect_retried") is seen too.
        self.sub = sockets.make_socket(ctx, zmq.SUB, curve=curve)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.monitor = sockets.watch(self.sub)
        self.sub.connect(endpoint)
        self.malformed = 0
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def run(self, duration_s: float | None = None) -> None:
        """Poll until stopped, the sink's reader is gone, or ``duration_s`` passed."""
        deadline = None if duration_s is None else self.clock() + duration_s
        try:
            while not self.stop.is_set():
                now = self.clock()
                if deadline is not None and now >= deadline:
                    return
                timeout_s = min(MAX_WAIT_S, self.sink.wait_s(now))
                if deadline is not None:
                    timeout_s = min(timeout_s, deadline - now)
                ready = dict(self.poller.poll(max(0.0, timeout_s) * 1000))
                self.step(ready)
        except OutputClosed:
            return

    def step(self, ready: dict) -> None:
        """Handle what one poll found, then let the state judge and the sink draw."""
        now, wall = self.clock(), self.wall()
        if self.sub in ready:
            self._drain_bus(now, wall)
        if self.monitor in ready:
            self._drain_monitor(now, wall)
        self.state.note_malformed(self.malformed)
        self.sink.derived(self.state.tick(now), wall)
        self.sink.refresh(self.state, now, wall)

    def close(self) -> None:
        """Close both sockets (the context can then terminate at once)."""
        try:
            self.sub.disable_monitor()
        except zmq.ZMQError:
            pass
        sockets.close(self.monitor)
        sockets.close(self.sub)

    def _drain_bus(self, now: float, wall: float) -> None:
        for _ in range(DRAIN_LIMIT):
            if not self.sub.get(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = self.sub.recv_multipart(zmq.NOBLOCK)
            try:
                topic, msg = codec.decode_pub(frames)
            except RemoteProtocolError as exc:
                self.malformed += 1  # counted, shown, dropped: never crash on input
                log.warning("dropped malformed bus message", error=str(exc))
                continue
            self.sink.bus(topic, msg, wall)
            self.sink.derived(self.state.handle(topic, msg, now), wall)

    def _drain_monitor(self, now: float, wall: float) -> None:
        for _ in range(DRAIN_LIMIT):
            if not self.monitor.get(zmq.EVENTS) & zmq.POLLIN:
                return
            event, endpoint = sockets.read_event(self.monitor)
            self.sink.socket(SUB_LABEL, event, endpoint, wall)
            self.sink.derived(self.state.on_socket(SUB_LABEL, event, endpoint, now), wall)
