"""frontend/channel.py with real ZeroMQ sockets (inproc, one process, under
gevent): one DEALER shared by many greenlets, each reply handed to the
greenlet that waits for its request id, late replies dropped, no connection
and cancellation reported as the frontend's backend expects."""

from __future__ import annotations

import uuid

import gevent
import pytest
import zmq

from common import codec, sockets
from common.errors import PeerUnavailable, RpcTimeout
from common.protocol import Lookup, StockInfo
from frontend.channel import Channel
from frontend.greenwait import SocketSet


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Server:
    """A ROUTER answering lookups in a greenlet; ``hold`` names the stocks it
    answers only after the next request (to answer out of order)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hold: tuple[str, ...] = (), silent: tuple[str, ...] = ()):
        self.router = sockets.make_socket(ctx, zmq.ROUTER)
        self.router.bind(endpoint)
        self.hold, self.silent = hold, silent
        self.greenlet = gevent.spawn(self._serve)

    def _serve(self) -> None:
        watched = SocketSet()
        watched.add(self.router)
        held: list = []
        while True:
            if not watched.wait(1.0):
                continue
            while self.router.get(zmq.EVENTS) & zmq.POLLIN:
                frames = self.router.recv_multipart()
                name = codec.decode(frames[-1]).name
                reply = frames[:-1] + [codec.encode(StockInfo(name, 1.0, len(name), 0, 1, 1))]
                if name in self.silent:
                    continue
                if name in self.hold:
                    held.append(reply)
                    continue
                self.router.send_multipart(reply)
                for late in held:
                    self.router.send_multipart(late)
                held.clear()

    def close(self) -> None:
        self.greenlet.kill()
        self.router.close(linger=0)


def endpoint() -> str:
    return f"inproc://channel-{uuid.uuid4().hex}"


def test_replies_that_come_back_out_of_order_reach_the_greenlet_that_asked(ctx):
    where = endpoint()
    server = Server(ctx, where, hold=("FishCo",))
    channel = Channel(ctx, where)
    try:
        first = gevent.spawn(channel.request, Lookup("FishCo"), 2.0)  # answered only after the next one
        gevent.sleep(0.01)
        second = gevent.spawn(channel.request, Lookup("GameStart"), 2.0)
        gevent.joinall([first, second], timeout=3, raise_error=True)
        assert first.value.name == "FishCo" and second.value.name == "GameStart"
    finally:
        channel.close()
        server.close()


def test_a_reply_that_comes_after_its_caller_gave_up_is_dropped(ctx):
    where = endpoint()
    server = Server(ctx, where, hold=("Late",))
    channel = Channel(ctx, where)
    try:
        with pytest.raises(RpcTimeout):
            channel.request(Lookup("Late"), 0.05)
        assert channel.request(Lookup("Next"), 2.0).name == "Next"  # its reply releases the late one
        gevent.sleep(0.02)
        assert channel.dropped == 1
    finally:
        channel.close()
        server.close()


def test_with_nobody_to_talk_to_nothing_is_sent(ctx):
    (port,) = sockets.free_tcp_ports(1)
    channel = Channel(ctx, f"tcp://127.0.0.1:{port}")  # nobody listens there
    try:
        with pytest.raises(PeerUnavailable):
            channel.request(Lookup("FishCo"), 1.0, connect_s=0.05)
    finally:
        channel.close()


def test_a_cancelled_wait_gives_up_at_once(ctx):
    where = endpoint()
    server = Server(ctx, where, silent=("Never",))
    channel = Channel(ctx, where)
    try:
        started = gevent.get_hub().loop.now()
        with pytest.raises(RpcTimeout):
            channel.request(Lookup("Never"), 5.0, cancel=lambda: gevent.get_hub().loop.now() - started > 0.05)
        assert gevent.get_hub().loop.now() - started < 1.0
    finally:
        channel.close()
        server.close()


def test_a_request_waiting_when_the_channel_closes_is_of_unknown_outcome(ctx):
    where = endpoint()
    server = Server(ctx, where, silent=("FishCo",))
    channel = Channel(ctx, where)
    try:
        waiting = gevent.spawn(channel.request, Lookup("FishCo"), 5.0)
        gevent.sleep(0.05)  # sent, and unanswered
        channel.close()
        waiting.join(timeout=2)
        assert isinstance(waiting.exception, RpcTimeout)  # not PeerUnavailable: it was sent
        assert "closed before the reply" in str(waiting.exception)
    finally:
        server.close()
