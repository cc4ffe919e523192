"""One DEALER socket per backend, shared by every request handler of the frontend.

The frontend runs on gevent: all its greenlets share one OS thread, so one
socket may serve all of them as long as no call on it blocks (every send
and receive here is non-blocking). A request goes out as::

    [request id, b"", body]

and the backend's ROUTER answers with the same envelope, so the reply comes
back as ``[request id, b"", body]`` and is handed to the greenlet that
waits for that id; a reply nobody waits for any more (its caller timed
out) is dropped. Many requests are in flight on one connection at once,
which is the ZeroMQ guide's answer to the Lazy Pirate's one-request-per-REQ
limit: nothing is ever stuck, so nothing is closed and reopened on a
timeout.

Replies are read in the gevent hub itself, by an I/O watcher on the
socket's ``ZMQ_FD``: that descriptor only says "the socket's state may have
changed", so each wake-up drains ``ZMQ_EVENTS`` until no message is left,
and so does every send (a send may consume the edge that announced a
reply). No greenlet is switched to until its own reply is there.

With ``ZMQ_IMMEDIATE`` a send with no connection fails at once; the caller
retries for up to ``connect_s`` before it gives up (:class:`PeerUnavailable`:
nothing was sent). A connection counts only once its CURVE handshake has
succeeded, so a backend that does not hold the key the channel expects
(or does not accept the frontend's) is never sent anything.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import gevent
import gevent.event
import zmq

from common import codec, sockets
from common.errors import PeerUnavailable, RpcTimeout, from_error_message
from common.protocol import Error, Message

# How often a waiting call checks its cancel condition, and how often a send
# is retried while there is no connection.
POLL_SLICE_S = 0.005


class Channel:
    """Requests to one backend over one DEALER.

    :param ctx: the ZeroMQ context.
    :param endpoint: the backend's ROUTER.
    :param on_open: called with the socket before it connects (to attach the socket monitor).
    :param curve: the socket's CURVE keys (the backend's public key among them); None only with CURVE off.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str,
                 on_open: Callable[[zmq.Socket], None] | None = None,
                 curve: sockets.CurveClient | None = None) -> None:
        self.endpoint = endpoint
        self.sock = sockets.make_socket(ctx, zmq.DEALER, immediate=True, curve=curve)
        if on_open is not None:
            on_open(self.sock)
        self.sock.connect(endpoint)
        self._ids = itertools.count(1)
        self._waiting: dict[bytes, gevent.event.AsyncResult] = {}
        self._watcher = gevent.get_hub().loop.io(self.sock.get(zmq.FD), 1)
        self._watcher.start(self._drain)
        self.dropped = 0  # replies that arrived after their caller gave up

    def close(self) -> None:
        self._watcher.stop()
        self._watcher.close()
        for result in self._waiting.values():  # sent, never answered: their outcome is unknown
            result.set_exception(RpcTimeout(f"the channel to {self.endpoint} closed before the reply"))
        self._waiting.clear()
        sockets.close(self.sock)

    def request(self, msg: Message, timeout_s: float, *, cancel: Callable[[], bool] | None = None,
                connect_s: float | None = None) -> Message:
        """Send ``msg`` and wait for its reply.

        :param timeout_s: the whole wait, connection included.
        :param cancel: checked every few milliseconds; when it returns True the
            call gives up as on a timeout (to switch to a new leader at once).
        :param connect_s: how long to wait for a connection before giving up
            without sending (defaults to the whole timeout).
        :returns: the reply, unless it is an ``Error``.
        :raises PeerUnavailable: no connection; the request was not sent.
        :raises RpcTimeout: sent, but no reply in time; the outcome is unknown.
        :raises RemoteError: the peer answered with an ``Error``.
        :raises RemoteProtocolError: the reply is not a valid message.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        connect_deadline = start + (timeout_s if connect_s is None else min(connect_s, timeout_s))
        rid = next(self._ids).to_bytes(8, "big")
        frames = [rid, b"", codec.encode(msg)]
        while True:
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                if time.monotonic() >= connect_deadline or (cancel is not None and cancel()):
                    raise PeerUnavailable(f"no connection to {self.endpoint}") from None
                gevent.sleep(POLL_SLICE_S)
            except zmq.ZMQError as exc:
                raise PeerUnavailable(f"cannot send to {self.endpoint}: {exc}") from None
        result = gevent.event.AsyncResult()
        self._waiting[rid] = result
        try:
            self._drain()  # the send may have swallowed the edge of an earlier reply
            while not result.ready():
                left = deadline - time.monotonic()
                if left <= 0 or (cancel is not None and cancel()):
                    raise RpcTimeout(f"no reply from {self.endpoint} within {timeout_s:.3f}s")
                result.wait(left if cancel is None else min(left, POLL_SLICE_S))
                if not result.ready():
                    self._drain()  # in case an edge was missed
        finally:
            self._waiting.pop(rid, None)
        reply = codec.decode(result.get())
        if isinstance(reply, Error):
            raise from_error_message(reply)
        return reply

    def _drain(self) -> None:
        """Hand every waiting reply to its caller (runs in the hub or a caller)."""
        sock = self.sock
        while sock.get(zmq.EVENTS) & zmq.POLLIN:
            frames = sock.recv_multipart(zmq.NOBLOCK)
            result = self._waiting.get(frames[0]) if len(frames) == 3 and frames[1] == b"" else None
            if result is None:
                self.dropped += 1
            elif not result.ready():
                result.set(frames[2])

