"""The broker: an XSUB/XPUB proxy between every publisher and subscriber.

Publishers connect PUB sockets to the XSUB side, subscribers connect SUB
sockets to the XPUB side; subscriptions travel upstream, messages downstream.
The forwarding runs inside libzmq (``zmq.proxy_steerable``) on a thread of
its own that owns both proxy sockets; the main thread publishes the broker's
heartbeat *through* the proxy (so a heartbeat proves the proxy forwards) and
reports the proxy sockets' connect and disconnect events. The broker keeps
nothing durable and may be restarted at any time; PUB and SUB sockets
reconnect by themselves.

Both proxy sockets are CURVE servers: nobody publishes on the bus or hears
it without one of the cluster's keys. Their ZAP requests come over inproc,
in the same context, to the broker's ZAP handler, whose socket the main
thread's loop serves (:class:`common.security.Gate`), not the proxy thread.
"""

from __future__ import annotations

import threading

import zmq

from common import security, sockets
from common.bus import Publisher
from common.config import Config
from common.heartbeat import Ticker
from common.logs import get_logger
from common.node import Loop
from common.protocol import BrokerStatus, NodeKind, SocketEvent, StartedEvent, StoppingEvent

log = get_logger(__name__)


class Broker:
    """Build it (binding both endpoints), then :meth:`run` until ``stop`` is set."""

    def __init__(self, config: Config, ctx: zmq.Context, stop: threading.Event, now: float) -> None:
        self.ctx = ctx
        self.loop = Loop(stop)
        # The gate first: no server socket binds before its ZAP handler is there.
        self.gate = security.Gate(ctx, security.node_keys(config, "broker"),
                                  lambda event: self.bus.event(event, warn=True))
        self.gate.attach(self.loop)
        self.xsub = sockets.make_socket(ctx, zmq.XSUB, curve=self.gate.server("xsub"))
        self.xpub = sockets.make_socket(ctx, zmq.XPUB, curve=self.gate.server("xpub"))
        self.xsub.bind(config.broker.xsub.bind)
        self.xpub.bind(config.broker.xpub.bind)
        # The monitors are made here, before the proxy thread takes the sockets over.
        self.loop.watch(self.xsub, "xsub", self.on_socket_event)
        self.loop.watch(self.xpub, "xpub", self.on_socket_event)
        self.control = ctx.socket(zmq.PAIR)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(f"inproc://broker-control-{id(self)}")
        self.proxy = threading.Thread(target=self._proxy, name="proxy", daemon=True)
        self.bus = Publisher(ctx, config.broker.xsub.connect, "broker", NodeKind.BROKER,
                             config.heartbeat.interval_ms, curve=self.gate.client("broker"))
        self.beat = Ticker(config.heartbeat.interval_s, now)
        log.info("broker ready", xsub=config.broker.xsub.bind, xpub=config.broker.xpub.bind)

    def _proxy(self) -> None:
        control = self.ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(f"inproc://broker-control-{id(self)}")
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, control)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("proxy failed", error=str(exc))
        finally:
            control.close(linger=0)

    def run(self) -> None:
        # Not common.node.serve: the proxy thread owns xsub and xpub, so their
        # monitors may be taken down only after that thread has ended.
        self.proxy.start()
        self.bus.event(StartedEvent(self.bus.node))
        try:
            self.loop.run(self.tick)
        finally:
            self.bus.event(StoppingEvent(self.bus.node))
            self.bus.close(linger_ms=100)
            self.control.send(b"TERMINATE")
            self.proxy.join(timeout=2)
            for sock in (self.xsub, self.xpub):
                self.loop.remove(sock)
                sockets.close(sock)
            self.control.close(linger=0)
            self.loop.close_all()  # the ZAP socket, last of all

    def tick(self, now: float) -> float:
        if self.beat.due(now):
            self.bus.heartbeat(BrokerStatus(auth=self.gate.status()))
        return self.beat.remaining(now)

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        self.gate.on_socket_event(label, event, endpoint)
        self.bus.event(SocketEvent(self.bus.node, socket=label, event=event, endpoint=endpoint))
