"""The bus: PUB and SUB sockets that meet at the broker.

Publishers connect a PUB to the broker's XSUB endpoint; subscribers connect a
SUB to its XPUB endpoint. Both reconnect by themselves when the broker
restarts; what was published meanwhile is lost, which is why state (the
leader, the catalog's sequence number) is repeated in heartbeats rather than
said once (the ZeroMQ guide's Clone pattern). Both are CURVE clients of the
broker (``curve``: the process's keys and the broker's public key, from
:meth:`common.security.NodeKeys.client`), None only with CURVE off.

Each wrapper owns one socket and must stay in the thread that made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import zmq

from . import codec, sockets
from .errors import LocalProtocolError, RemoteProtocolError
from .logs import get_logger
from .protocol import (
    BrokerStatus, CatalogStatus, FrontendStatus, Heartbeat, Message, NodeEvent, NodeKind, ReplicaStatus, Topic,
)

log = get_logger(__name__)


class Publisher:
    """A node's voice on the bus.

    :param node: the node's name, put in heartbeats and events.
    :param kind: what the node is, put in heartbeats.
    :param interval_ms: the heartbeat interval, announced in each heartbeat.
    :param curve: the socket's CURVE keys (None: a plain socket).
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, node: str, kind: NodeKind, interval_ms: int,
                 curve: sockets.CurveClient | None = None) -> None:
        self.node = node
        self.kind = kind
        self.incarnation = uuid.uuid4().hex[:12]
        self.interval_ms = interval_ms
        self.sock = sockets.make_socket(ctx, zmq.PUB, curve=curve)
        self.sock.connect(endpoint)
        self._beat = 0

    def publish(self, topic: Topic, msg: Message) -> None:
        """Publish without blocking. A PUB socket never blocks: over its
        high-water mark (or with no subscriber) ZeroMQ drops the message,
        which subscribers notice by the gaps in sequence numbers."""
        self.sock.send_multipart(codec.encode_pub(topic, msg), zmq.NOBLOCK)

    def heartbeat(self, status: ReplicaStatus | CatalogStatus | FrontendStatus | BrokerStatus) -> None:
        """Publish the next heartbeat, with the node's current figures.

        :raises LocalProtocolError: if ``status`` is not the status of this
            node's kind.
        """
        if getattr(status, "KIND", None) is not self.kind:
            raise LocalProtocolError(f"a {self.kind} heartbeat cannot carry {type(status).__name__}")
        self._beat += 1
        self.publish(Topic.HEARTBEAT, Heartbeat(
            node=self.node, incarnation=self.incarnation, seq=self._beat, interval_ms=self.interval_ms,
            kind=self.kind,
            replica=status if isinstance(status, ReplicaStatus) else None,
            catalog=status if isinstance(status, CatalogStatus) else None,
            frontend=status if isinstance(status, FrontendStatus) else None,
            broker=status if isinstance(status, BrokerStatus) else None,
        ))

    def event(self, event: NodeEvent, warn: bool = False) -> None:
        """Publish one event for the monitor, and log it with its
        :meth:`NodeEvent.details` (as a warning with ``warn``).

        :raises LocalProtocolError: if the event names another node.
        """
        if event.node != self.node:
            raise LocalProtocolError(f"{self.node} cannot publish an event of {event.node}")
        (log.warning if warn else log.info)(f"event {event.MSG}", **event.details())
        self.publish(Topic.EVENT, event)

    def close(self, linger_ms: int = 0) -> None:
        """Close; ``linger_ms`` > 0 gives queued messages a moment to leave."""
        if not self.sock.closed:
            self.sock.close(linger=linger_ms)


class Subscriber:
    """Receives bus messages on the topics asked for.

    :param topics: topics to subscribe to; empty means all.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: tuple[Topic, ...] = (),
                 connect: bool = True, curve: sockets.CurveClient | None = None) -> None:
        """:param connect: False to connect later (:meth:`connect`), after
        attaching the socket monitor, so that not even the first event is missed.
        :param curve: the socket's CURVE keys (None: a plain socket)."""
        self.sock = sockets.make_socket(ctx, zmq.SUB, curve=curve)
        self.endpoint = endpoint
        for topic in topics or (b"",):
            self.sock.setsockopt(zmq.SUBSCRIBE, getattr(topic, "value", topic))
        self.malformed = 0
        if connect:
            self.connect()

    def connect(self) -> None:
        self.sock.connect(self.endpoint)

    def recv(self, timeout_ms: int) -> tuple[Topic, Message] | None:
        """Wait up to ``timeout_ms`` for one valid message.

        :returns: ``(topic, message)``, or None on timeout or a malformed
            message (which is counted and dropped).
        """
        if not self.sock.poll(timeout_ms):
            return None
        return next(self.drain(1), None)

    def drain(self, limit: int = 1000) -> Iterator[tuple[Topic, Message]]:
        """Yield the valid messages already waiting, at most ``limit``,
        without blocking (malformed ones are counted and dropped)."""
        for _ in range(limit):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                yield codec.decode_pub(frames)
            except RemoteProtocolError as exc:
                self.malformed += 1
                log.warning("dropped malformed bus message", error=str(exc))

    def close(self) -> None:
        sockets.close(self.sock)
