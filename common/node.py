"""What every backend node's process needs around its logic: a poll loop over
its sockets, socket-monitor events, signal handling and a clean exit.

The loop is single-threaded and owns every socket registered with it, which
is how the catalog, the order replicas and the broker keep ZeroMQ's rule of
one socket per thread. Handlers must not block; the loop wakes at least every
``MAX_WAIT_S`` so that a stop request is seen promptly.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import zmq

from . import sockets
from .errors import BrokenFold, ConfigError, StorageCorrupt, StorageError
from .logs import get_logger
from .protocol import StartedEvent, StoppingEvent

log = get_logger(__name__)

MAX_WAIT_S = 0.1
# Messages a handler reads from one socket before the loop looks at the others.
DRAIN_LIMIT = 256


class Loop:
    """Polls sockets and calls their handlers; calls ``tick`` between polls.

    :param stop: set it (from a signal handler or another thread) to end :meth:`run`.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.poller = zmq.Poller()
        self._handlers: dict[zmq.Socket, Callable[[], None]] = {}
        self._monitors: dict[zmq.Socket, zmq.Socket] = {}
        self._monitor_set: set[zmq.Socket] = set()

    def add(self, sock: zmq.Socket, handler: Callable[[], None]) -> None:
        """Call ``handler()`` whenever ``sock`` is readable."""
        self._handlers[sock] = handler
        self.poller.register(sock, zmq.POLLIN)

    def remove(self, sock: zmq.Socket) -> None:
        if self._handlers.pop(sock, None) is not None:
            self.poller.unregister(sock)
        monitor = self._monitors.pop(sock, None)
        if monitor is not None:
            self._monitor_set.discard(monitor)
            self.remove(monitor)
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            sockets.close(monitor)

    def watch(self, sock: zmq.Socket, label: str, on_event: Callable[[str, str, str], None]) -> None:
        """Attach the socket monitor to ``sock``; ``on_event(label, event,
        endpoint)`` is called for each connect, disconnect, retry or failed
        handshake."""
        monitor = sockets.watch(sock)
        self._monitors[sock] = monitor
        self._monitor_set.add(monitor)

        def read() -> None:
            for _ in range(DRAIN_LIMIT):
                if not monitor.get(zmq.EVENTS) & zmq.POLLIN:
                    return
                event, endpoint = sockets.read_event(monitor)
                if event != "monitor_stopped":
                    on_event(label, event, endpoint)

        self.add(monitor, read)

    def run(self, tick: Callable[[float], float]) -> None:
        """Poll until stopped. ``tick(now)`` runs after every poll and returns
        how many seconds may pass before it must run again."""
        wait = 0.0
        while not self.stop.is_set():
            events = self.poller.poll(max(0.0, min(wait, MAX_WAIT_S)) * 1000)
            # Socket events first: a peer's death must be known before the
            # messages that arrived with the news (a vote request about it).
            if len(events) > 1:
                events.sort(key=lambda event: event[0] not in self._monitor_set)
            for sock, _ in events:
                handler = self._handlers.get(sock)
                if handler is not None:
                    handler()
            wait = tick(time.monotonic())

    def close_all(self) -> None:
        """Close every socket the loop knows, monitors included (an open
        socket would make ``Context.term`` wait forever)."""
        for sock, monitor in list(self._monitors.items()):
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._handlers.pop(monitor, None)
            self.poller.unregister(monitor)
            sockets.close(monitor)
        self._monitors.clear()
        self._monitor_set.clear()
        for sock in list(self._handlers):
            self.poller.unregister(sock)
            sockets.close(sock)
        self._handlers.clear()


def serve(loop: Loop, bus, tick: Callable[[float], float], close: Callable[[], None],
          started: StartedEvent) -> None:
    """Run a node: say ``started`` on the bus, poll until stopped, say
    ``stopping``, then close every socket and call ``close`` (the node's store).

    :param bus: the node's :class:`common.bus.Publisher` (closed last, after a
        moment for the goodbye to leave).
    """
    bus.event(started)
    try:
        loop.run(tick)
    finally:
        bus.event(StoppingEvent(bus.node))
        loop.close_all()
        bus.close(linger_ms=100)
        close()


def readable(sock: zmq.Socket) -> bool:
    """True when a message waits on ``sock`` (without blocking)."""
    return bool(sock.get(zmq.EVENTS) & zmq.POLLIN)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C), for a clean shutdown."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


class RestartFromDisk(Exception):
    """Raised out of a node's loop when what it holds in memory (or what the
    file system's cache holds for it) can no longer be trusted: after a failed
    fsync. :func:`run_main` then runs the node again from what the disk holds,
    with ``extra_args`` added (what to distrust).
    """

    def __init__(self, reason: str, extra_args: list[str]) -> None:
        super().__init__(reason)
        self.extra_args = extra_args


# A node that restarts from disk waits this long first, so that a disk that
# keeps failing costs a restart per interval, not a busy loop.
RESTART_DELAY_S = 1.0


def _restart(exc: RestartFromDisk) -> None:
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None else None
    if not module:
        print(f"storage failed: {exc}; cannot restart this process by itself", file=sys.stderr)
        sys.exit(75)
    names = {arg.split("=", 1)[0] for arg in exc.extra_args if arg.startswith("--")}
    argv, skip = [], False
    for arg in sys.argv[1:]:  # the flags being replaced go, with their values
        if skip:
            skip = False
            continue
        if arg.split("=", 1)[0] in names:
            skip = "=" not in arg
            continue
        argv.append(arg)
    print(f"storage failed: {exc}; restarting from what the disk holds in {RESTART_DELAY_S:g} s",
          file=sys.stderr, flush=True)
    time.sleep(RESTART_DELAY_S)
    os.execv(sys.executable, [sys.executable, "-m", module, *argv, *exc.extra_args])


def run_main(main: Callable[[], None]) -> None:
    """Run a node's ``main``; a configuration error, or data that cannot be
    trusted at start, exits with status 2 and a message that says what to
    fix, not a traceback. A disk that refuses the node's work before its loop
    runs exits with status 1 and says so, except in a node restarted from
    disk (``--distrust-after``): that one tries again every
    :data:`RESTART_DELAY_S`, since what to distrust lives only in its
    arguments."""
    try:
        main()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StorageCorrupt as exc:
        print(f"storage error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BrokenFold as exc:
        print(f"the order log breaks the stock book's rules, so this node stops rather than guess: {exc}",
              file=sys.stderr)
        sys.exit(2)
    except RestartFromDisk as exc:
        _restart(exc)
    except StorageError as exc:  # full or failing, at start
        if any(arg.split("=", 1)[0] == "--distrust-after" for arg in sys.argv[1:]):
            _restart(RestartFromDisk(str(exc), []))
        print(f"storage error: {exc}", file=sys.stderr)
        sys.exit(1)
