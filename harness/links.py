"""Breakable network links between nodes that stay alive: TCP proxies.

Each :class:`Link` listens on a free loopback port and forwards to one node's
real port. A cluster built with ``links=True`` gives every node its own
config in which every *other* node's endpoint is the link from this node to
that one, so the link between any two nodes can be broken alone:

* :meth:`Link.blackhole` stops forwarding but keeps the connections open (a
  hung network: nothing is closed, nothing arrives, only missed heartbeats
  tell); :meth:`Link.restore` lets the held data through again;
* :meth:`Link.reset` closes every connection and refuses new ones (a cable
  pulled out: the peers see the disconnect at once);
* :meth:`Link.delay` adds latency to everything that crosses.

All links of a cluster run on one asyncio loop in a background thread; the
methods may be called from any thread. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass
class _Pipe:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class Link:
    """A proxy from ``source`` to ``target`` (node names), listening on ``port``."""

    hub: LinkHub
    source: str
    target: str
    target_port: int
    port: int = 0
    mode: str = "open"  # open, blackhole, reset
    latency_s: float = 0.0
    pairs: list[tuple[_Pipe, _Pipe]] = field(default_factory=list)
    server: asyncio.base_events.Server | None = None
    resumed: asyncio.Event | None = None

    # --- control (any thread) -----------------------------------------------------

    def blackhole(self) -> None:
        self.hub.call(self._set_mode, "blackhole")

    def reset(self) -> None:
        self.hub.call(self._set_mode, "reset")

    def restore(self) -> None:
        self.hub.call(self._set_mode, "open")

    def delay(self, seconds: float) -> None:
        def apply() -> None:
            self.latency_s = seconds

        self.hub.call(apply)

    # --- the loop's side ----------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "open":
            self.resumed.set()
        else:
            self.resumed.clear()
        if mode == "reset":
            for a, b in self.pairs:
                for pipe in (a, b):
                    pipe.writer.transport.abort()
            self.pairs.clear()

    async def _serve(self, avoid: set[int]) -> None:
        """Listen on a free port that is none of ``avoid`` (the ports the
        cluster's nodes are about to bind)."""
        self.resumed = asyncio.Event()
        self.resumed.set()
        while True:
            server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            if port not in avoid:
                self.server, self.port = server, port
                return
            server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (_Pipe(reader, writer), _Pipe(up_reader, up_writer))
        self.pairs.append(pair)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        for pipe in pair:
            pipe.writer.transport.abort()
        if pair in self.pairs:
            self.pairs.remove(pair)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.resumed.wait()  # a blackhole stops reading: TCP holds the rest
            data = await reader.read(CHUNK)
            if not data:
                break
            await self.resumed.wait()
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.mode == "reset":
                break
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


class LinkHub:
    """All links of one cluster, on one event loop thread."""

    def __init__(self, avoid: set[int] | None = None) -> None:
        self.avoid = avoid or set()
        self.loop = asyncio.new_event_loop()
        self.links: dict[tuple[str, str], Link] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="links", daemon=True)
        self._thread.start()

    def call(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the loop and wait for it."""
        async def run():
            fn(*args)

        asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def add(self, source: str, target: str, target_port: int) -> Link:
        link = Link(self, source, target, target_port)
        asyncio.run_coroutine_threadsafe(link._serve(self.avoid), self.loop).result(timeout=5)
        self.links[(source, target)] = link
        return link

    def link(self, source: str, target: str) -> Link:
        return self.links[(source, target)]

    def between(self, a: str, b: str) -> list[Link]:
        """Both directions between two nodes (those that exist)."""
        return [link for key, link in self.links.items() if key in ((a, b), (b, a))]

    def close(self) -> None:
        async def shutdown():
            for link in self.links.values():
                if link.server is not None:
                    link.server.close()
                link._set_mode("reset")

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
