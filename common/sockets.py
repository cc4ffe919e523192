"""Socket construction and the ZeroMQ socket monitor, in one place.

Every socket a node opens comes from :func:`make_socket`, so every socket has
its linger, high-water marks and size limit set when it is created (an unset
linger makes ``Context.term`` hang; an unbounded queue lets a flood or a slow
consumer eat memory). The limits, per socket type, are documented in
``docs/PROTOCOL.md`` ("Resource bounds").

It is also the one place where key material meets a socket: ``curve=`` takes
a :class:`CurveServer` (a bound socket that accepts only what its node's ZAP
handler allows, :mod:`common.security`) or a :class:`CurveClient` (a
connecting socket that proves its own key and accepts only the server whose
public key it holds), or None for a plain socket (CURVE off, or inproc).

:func:`watch` attaches ZeroMQ's socket monitor to a socket; :func:`read_event`
turns what the monitor says into ``(event, endpoint)`` with a readable event
name, the form nodes publish on the bus.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from .protocol import MAX_MESSAGE_BYTES

# Queue limits, in messages. A PUB drops and a ROUTER/DEALER refuses beyond them.
PUB_HWM = 10_000
SUB_HWM = 10_000
ROUTER_HWM = 10_000
DEALER_HWM = 1_000

EVENT_NAMES = {
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_CONNECT_RETRIED: "connect_retried",
    zmq.EVENT_LISTENING: "listening",
    zmq.EVENT_BIND_FAILED: "bind_failed",
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_ACCEPT_FAILED: "accept_failed",
    zmq.EVENT_CLOSED: "closed",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_MONITOR_STOPPED: "monitor_stopped",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshake_succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed_protocol",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_failed_auth",
}

# What nodes report: connection life cycle, retries and failed handshakes.
# (CONNECT_DELAYED fires on every attempt and says nothing new.)
WATCHED_EVENTS = (
    zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_ACCEPTED
    | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_BIND_FAILED | zmq.EVENT_ACCEPT_FAILED
    | zmq.EVENT_MONITOR_STOPPED  # the watched socket closed: the monitor may go too
)

_HWM = {
    zmq.PUB: (PUB_HWM, 0), zmq.XPUB: (PUB_HWM, PUB_HWM), zmq.SUB: (0, SUB_HWM),
    zmq.XSUB: (SUB_HWM, SUB_HWM), zmq.ROUTER: (ROUTER_HWM, ROUTER_HWM),
    zmq.DEALER: (DEALER_HWM, DEALER_HWM),
}


@dataclass(frozen=True)
class CurveServer:
    """The CURVE side of a socket that binds: the node's key pair (Z85), and
    the ZAP domain its handler knows the socket by (the socket's label, so a
    refusal names the socket). Connections are authenticated by the ZAP
    handler, and refused when there is none (``ZMQ_ZAP_ENFORCE_DOMAIN``)."""

    public: bytes
    secret: bytes
    domain: str

    def __repr__(self) -> str:  # never a secret key in a log or a traceback
        return f"CurveServer(public={self.public.decode()!r}, domain={self.domain!r})"


@dataclass(frozen=True)
class CurveClient:
    """The CURVE side of a socket that connects: this process's key pair and
    the public key of the one server it may talk to (Z85). A server without
    that key cannot finish the handshake: no message ever reaches it."""

    public: bytes
    secret: bytes
    server: bytes

    def __repr__(self) -> str:
        return f"CurveClient(public={self.public.decode()!r}, server={self.server.decode()!r})"


def apply_curve(sock: zmq.Socket, curve: CurveServer | CurveClient | None) -> zmq.Socket:
    """Give a socket its CURVE keys (before it binds or connects); None leaves
    it plain. :func:`make_socket` calls it; tools that make their own sockets
    may too."""
    if isinstance(curve, CurveServer):
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, curve.domain.encode())
        # Without this, a CURVE server whose context has no ZAP handler would
        # let in any client that knows its public key.
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    elif isinstance(curve, CurveClient):
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server)
    elif curve is not None:
        raise TypeError(f"curve must be a CurveServer, a CurveClient or None, not {type(curve).__name__}")
    return sock


def make_socket(ctx: zmq.Context, kind: int, *, immediate: bool = False, identity: str | None = None,
                curve: CurveServer | CurveClient | None = None) -> zmq.Socket:
    """A socket with linger 0, bounded queues and a maximum message size.

    :param immediate: queue outgoing messages only on completed connections
        (``ZMQ_IMMEDIATE``), so a send to a dead peer fails at once instead of
        waiting in a queue for it to come back.
    :param identity: routing id shown to ROUTER peers (for logs).
    :param curve: the socket's CURVE keys (:func:`apply_curve`); None for a plain socket.
    """
    sock = ctx.socket(kind)
    apply_curve(sock, curve)
    sock.setsockopt(zmq.LINGER, 0)
    sndhwm, rcvhwm = _HWM.get(kind, (1000, 1000))
    if sndhwm:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    if rcvhwm:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if kind in (zmq.ROUTER, zmq.DEALER, zmq.SUB, zmq.XSUB, zmq.XPUB):
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    if kind == zmq.ROUTER:
        # A peer that redials with its routing id takes it over at once (by
        # default the ROUTER would ignore the new connection while the old one
        # lingers, and drop everything that peer sends).
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, f"{identity}.{uuid.uuid4().hex[:8]}".encode())
    return sock


def watch(sock: zmq.Socket) -> zmq.Socket:
    """Attach the socket monitor; poll the returned PAIR socket for events."""
    monitor = sock.get_monitor_socket(WATCHED_EVENTS)
    monitor.setsockopt(zmq.LINGER, 0)
    return monitor


def read_event(monitor: zmq.Socket) -> tuple[str, str]:
    """Read one event from a monitor socket (call only when it is readable).

    :returns: ``(event name, endpoint)``.
    """
    event = recv_monitor_message(monitor, zmq.NOBLOCK)
    name = EVENT_NAMES.get(event["event"], f"event_{event['event']}")
    endpoint = event.get("endpoint", b"")
    if isinstance(endpoint, bytes):
        endpoint = endpoint.decode(errors="replace")
    return name, endpoint


def close(sock: zmq.Socket | None) -> None:
    """Close a socket without waiting for unsent messages."""
    if sock is not None and not sock.closed:
        sock.close(linger=0)


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct TCP ports that were free on ``host`` a moment ago (all held
    open until all are found, so they differ); for tools and tests that start
    servers of their own."""
    held, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            held.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in held:
            s.close()
    return ports
