"""Request/reply over ZeroMQ, the server side: reading requests from a
ROUTER and answering them.

:func:`recv_request` reads one request from a ROUTER, splitting off the
routing envelope; :func:`pending_requests` yields the requests already
waiting, without blocking; :func:`send_reply` answers one. Garbage (frames
without an envelope) is dropped; a body that is not a valid message comes
back as a :class:`RemoteProtocolError` so the server can answer
``bad_request``. The client side of the frontend is :mod:`frontend.channel`
(one DEALER per backend, many requests in flight); the order leader's
DEALERs to its peers and to the catalog are one-way and need no helper.
"""

from __future__ import annotations

from collections.abc import Iterator

import zmq

from . import codec
from .errors import RemoteProtocolError
from .protocol import Message

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
