"""Request/reply over ZeroMQ: the server side of a ROUTER, and a client of
REQ sockets that never blocks forever.

Server side: :func:`recv_request` reads one request from a ROUTER, splitting
off the routing envelope; :func:`send_reply` answers it. Garbage (frames
without an envelope) is dropped; a body that is not a valid message comes
back as a :class:`RemoteProtocolError` so the server can answer ``bad_request``.

Client side: :class:`ReqPool` keeps REQ sockets to one endpoint for reuse
(a new socket per request would pay a TCP handshake each time). A REQ that
timed out is stuck in its send/receive cycle, so :func:`call` closes it and
the next call opens a fresh one (the ZeroMQ guide's Lazy Pirate). The pool
hands each socket to one caller at a time, which keeps ZeroMQ's rule of one
socket per thread (or greenlet) while it is in use. Every send and receive is
non-blocking; how to *wait* is the pool's :data:`Waiter` (the socket's own
poll by default; the frontend's greenlets wait through gevent instead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import zmq

from . import codec, sockets
from .errors import PeerUnavailable, RemoteProtocolError, RpcTimeout, from_error_message
from .protocol import Error, Message

# How often a waiting call checks its cancel condition.
POLL_SLICE_MS = 5

# wait(socket, zmq.POLLIN or zmq.POLLOUT, timeout in seconds) -> ready in time?
Waiter = Callable[[zmq.Socket, int, float], bool]


def poll_wait(sock: zmq.Socket, flag: int, timeout_s: float) -> bool:
    """The default :data:`Waiter`: the socket's own poll (blocks the thread)."""
    return bool(sock.poll(max(0, int(timeout_s * 1000)), flag))


def recv_request(router: zmq.Socket) -> tuple[list[bytes], Message | RemoteProtocolError] | None:
    """Read one request from a ROUTER that is known to be readable.

    :returns: ``(envelope, message or the decoding error)``, or None when the
        frames have no envelope to reply to (dropped).
    """
    try:
        frames = router.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
    try:
        envelope, body = codec.split_envelope(frames)
    except RemoteProtocolError:
        return None
    try:
        return envelope, codec.decode(body)
    except RemoteProtocolError as exc:
        return envelope, exc


def pending_requests(router: zmq.Socket, limit: int) -> Iterator[tuple[list[bytes], Message | RemoteProtocolError] | None]:
    """The requests already waiting on a ROUTER, at most ``limit``, without
    blocking; None stands for frames that were dropped (no envelope)."""
    for _ in range(limit):
        if not router.get(zmq.EVENTS) & zmq.POLLIN:
            return
        yield recv_request(router)


def send_reply(router: zmq.Socket, envelope: list[bytes], msg: Message) -> bool:
    """Answer a request; a peer that went away is not an error.

    :returns: False if ZeroMQ could not queue the reply.
    """
    try:
        router.send_multipart([*envelope, codec.encode(msg)], zmq.NOBLOCK)
        return True
    except (zmq.Again, zmq.ZMQError):
        return False


class ReqPool:
    """REQ sockets to one endpoint, each lent to one caller at a time.

    :param ctx: the ZeroMQ context.
    :param endpoint: where to connect.
    :param on_open: called with each new socket before it connects (to attach
        the socket monitor, say).
    :param wait: how a caller waits for its socket (:data:`Waiter`).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str,
                 on_open: Callable[[zmq.Socket], None] | None = None, wait: Waiter = poll_wait) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.on_open = on_open
        self.wait = wait
        self._idle: list[zmq.Socket] = []
        self._lock = threading.Lock()

    def acquire(self) -> zmq.Socket:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        sock = sockets.make_socket(self.ctx, zmq.REQ, immediate=True)
        if self.on_open is not None:
            self.on_open(sock)
        sock.connect(self.endpoint)
        return sock

    def release(self, sock: zmq.Socket) -> None:
        """Give back a socket whose last request was answered."""
        with self._lock:
            self._idle.append(sock)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sockets.close(sock)


def call(
    pool: ReqPool,
    msg: Message,
    timeout_s: float,
    *,
    cancel: Callable[[], bool] | None = None,
    connect_s: float | None = None,
) -> Message:
    """Send ``msg`` and wait for the reply.

    :param timeout_s: the whole wait, connection included.
    :param cancel: polled every few milliseconds; when it returns True the call
        gives up as on a timeout (used to switch to a new leader at once).
    :param connect_s: how long to wait for a connection before giving up
        without sending (defaults to the whole timeout).
    :returns: the reply, unless it is an ``Error``.
    :raises PeerUnavailable: no connection; the request was not sent.
    :raises RpcTimeout: sent, but no reply in time; the outcome is unknown.
    :raises RemoteError: the peer answered with an ``Error``.
    :raises RemoteProtocolError: the peer's reply is not a valid message.
    """
    sock = pool.acquire()
    start = time.monotonic()
    connect_deadline = start + (timeout_s if connect_s is None else min(connect_s, timeout_s))
    deadline = start + timeout_s
    try:
        while not pool.wait(sock, zmq.POLLOUT, _slice_s(connect_deadline, cancel)):
            if time.monotonic() >= connect_deadline or (cancel is not None and cancel()):
                raise PeerUnavailable(f"no connection to {pool.endpoint}")
        try:
            sock.send(codec.encode(msg), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise PeerUnavailable(f"cannot send to {pool.endpoint}: {exc}") from None
        while not pool.wait(sock, zmq.POLLIN, _slice_s(deadline, cancel)):
            if time.monotonic() >= deadline or (cancel is not None and cancel()):
                raise RpcTimeout(f"no reply from {pool.endpoint} within {timeout_s:.3f}s")
        try:
            frame = sock.recv(zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise RpcTimeout(f"receive from {pool.endpoint} failed: {exc}") from None
        reply = codec.decode(frame)
    except BaseException:
        sockets.close(sock)  # Lazy Pirate: a REQ mid-cycle is never reused
        raise
    pool.release(sock)
    if isinstance(reply, Error):
        raise from_error_message(reply)
    return reply


def _slice_s(deadline: float, cancel: Callable[[], bool] | None) -> float:
    """How long one wait may last: to the deadline, or a slice when a cancel
    condition must be checked along the way."""
    left = max(0.001, deadline - time.monotonic())
    return left if cancel is None else min(left, POLL_SLICE_MS / 1000)
