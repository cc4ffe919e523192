"""The processes the benchmark starts, and how it stops every one of them.

Each server (a Bazaar frontend, the bare route, the bare ZeroMQ echo) is a
:class:`harness.process.Process`: a process group of its own, its output in
a log file, stopped with SIGTERM to the group, then SIGKILL to whatever is
left of the group.
:class:`Servers` keeps them all, writes their process groups to
``pids.json`` in the output directory (so that a test, or a person, can kill
them if the benchmark itself is SIGKILLed) and stops them all on exit.

With ``--spawn`` the backends come from :func:`spawn_cluster`: a private
cluster on free loopback ports in a temporary directory, built with the test
harness's :class:`harness.cluster.Cluster`, and closed at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from common import codec, security
from common import config as configuration
from common.errors import RemoteProtocolError
from common.protocol import Lookup, StockInfo
from common.sockets import CurveClient, apply_curve, free_tcp_ports
from harness.cluster import Cluster
from harness.process import Process, Timeout, wait_until

from .http import HttpClient

# How long a server may take to answer after it starts.
READY_TIMEOUT_S = 30.0
# How long a server may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05


class ServerError(RuntimeError):
    """A server did not start; the message quotes the end of its log."""


def frontend_ready(port: int) -> Callable[[], bool]:
    """A frontend is ready when it knows a leader and has heard the catalog."""
    http = HttpClient("127.0.0.1", port, timeout_s=2)

    def ready() -> bool:
        reply = http.get("/stats")
        data = reply.data if reply.ok else None
        if not data:
            return False
        return data["leader"].get("leader") is not None and "catalog" in data.get("heard", {})

    return ready


def http_ready(port: int, path: str) -> Callable[[], bool]:
    http = HttpClient("127.0.0.1", port, timeout_s=2)
    return lambda: http.get(path).ok


def zmq_ready(endpoint: str, curve: CurveClient | None = None) -> Callable[[], bool]:
    """One REQ round trip to the echo server (a fresh socket per try): a
    :class:`Lookup` answered by a :class:`StockInfo`."""
    def ready() -> bool:
        ctx = zmq.Context.instance()
        sock = apply_curve(ctx.socket(zmq.REQ), curve)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            sock.send(codec.encode(Lookup("ping")))
            if not sock.poll(200):
                return False
            return isinstance(codec.decode(sock.recv()), StockInfo)
        except RemoteProtocolError:
            return False
        finally:
            sock.close(linger=0)

    return ready


class Servers:
    """Every server process the benchmark started; :meth:`close` stops them all.

    :param out_dir: where the logs and ``pids.json`` go.
    :param say: prints a line on the terminal.
    """

    def __init__(self, out_dir: Path, say: Callable[[str], None]) -> None:
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.children: list[Process] = []
        self.cluster = None
        self._tmp = None

    def start(self, name: str, argv: list[str], ready: Callable[[], Any], what: str) -> Process:
        """Start a server and wait until ``ready()`` says it serves.

        :raises ServerError: it exited first, or did not serve in time.
        """
        child = Process(name, argv, self.logs / f"{name}.log").start()
        self.children.append(child)
        self._write_pids()
        try:
            wait_until(ready, READY_TIMEOUT_S, what, interval=POLL_S, process=child)
        except Timeout as exc:
            raise ServerError(str(exc)) from None
        return child

    def frontend(self, config: Path, name: str, cache: bool, cache_size: int | None) -> tuple[Process, int]:
        """A Bazaar frontend on a free port against ``config``'s backends."""
        (port,) = free_tcp_ports(1)
        argv = ["-m", "frontend", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--name", name, "--cache" if cache else "--no-cache"]
        if cache and cache_size is not None:
            argv += ["--cache-size", str(cache_size)]
        try:
            child = self.start(name, argv, frontend_ready(port), "leader known and catalog heard")
        except ServerError as exc:
            hint = f"are the backends of {config} running? ./run.sh start, or use --spawn"
            raise ServerError(f"{exc}\n({hint})") from None
        self.say(f"started frontend {name} (pid {child.pid}): python {' '.join(argv)}")
        return child, port

    def bare_route(self, config: Path) -> tuple[Process, int]:
        (port,) = free_tcp_ports(1)
        argv = ["-m", "bench.bare_route", "--config", str(config), "--port", str(port)]
        child = self.start("bare-route", argv, http_ready(port, "/stocks/GameStart"), "answer on /stocks")
        self.say(f"started the bare Flask route (pid {child.pid}) on 127.0.0.1:{port}")
        return child, port

    def zmq_echo(self, config: Path) -> tuple[Process, str]:
        """The bare ZeroMQ echo, with CURVE when ``config``'s backends run it."""
        (port,) = free_tcp_ports(1)
        endpoint = f"tcp://127.0.0.1:{port}"
        argv = ["-m", "bench.zmq_echo", "--endpoint", endpoint, "--config", str(config)]
        curve = security.node_keys(configuration.load(config), security.TOOLS).client(security.TOOLS)
        child = self.start("zmq-echo", argv, zmq_ready(endpoint, curve), "round trip")
        self.say(f"started the bare ZeroMQ echo (pid {child.pid}) on {endpoint}, CURVE {'on' if curve else 'off'}")
        return child, endpoint

    def spawn_cluster(self, curve: bool = True) -> Path:
        """Start a private cluster on free loopback ports (with CURVE, or
        without it); returns its config path."""
        self._tmp = tempfile.TemporaryDirectory(prefix="bazaar-bench-")
        self.say(f"starting a private cluster (broker, catalog, 3 order replicas) in {self._tmp.name}, "
                 f"CURVE {'on' if curve else 'off'}")
        self.cluster = Cluster(Path(self._tmp.name), settings={"security": {"curve": curve}})
        self._write_pids()
        try:
            self.cluster.start(timeout=READY_TIMEOUT_S)
        finally:
            self._write_pids()
        # The harness's own frontend would only add noise: the benchmark starts its own.
        self.cluster.node("frontend").kill()
        ports = ", ".join(f"{k} {v}" for k, v in self.cluster.ports.items())
        self.say(f"private cluster up ({ports})")
        return self.cluster.config_path

    def pgids(self) -> set[int]:
        """Process groups of every server and cluster node (for CPU accounting)."""
        groups = {c.pid for c in self.children if c.pid is not None}
        if self.cluster is not None:
            groups |= {n.pid for n in self.cluster.nodes.values() if n.pid is not None}
        return groups

    def _write_pids(self) -> None:
        doc = {"bench": os.getpid(), "pgids": sorted(self.pgids())}
        (self.out_dir / "pids.json").write_text(json.dumps(doc) + "\n")

    def close(self) -> None:
        """Stop every server, then the private cluster; say so."""
        for child in reversed(self.children):
            was_alive = child.alive
            child.stop(STOP_TIMEOUT_S)  # the whole group, even if its leader already exited
            if was_alive:
                self.say(f"stopped {child.name} (process group {child.pid})")
        if self.cluster is not None:
            self.cluster.close()
            self.say("stopped the private cluster")
            self.cluster = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
