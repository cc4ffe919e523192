"""The processes the benchmark starts, and how it stops every one of them.

Each server (a Bazaar frontend, the bare route, the bare ZeroMQ echo) runs
in a process group of its own, with its output in a log file, and is stopped
with SIGTERM to the group, then SIGKILL to whatever is left of the group.
:class:`Servers` keeps them all, writes their process groups to
``pids.json`` in the output directory (so that a test, or a person, can kill
them if the benchmark itself is SIGKILLed) and stops them all on exit.

With ``--spawn`` the backends come from :func:`spawn_cluster`: a private
cluster on free loopback ports in a temporary directory, built with the test
harness's :class:`tests.harness.cluster.Cluster`, and closed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from common import codec
from common.errors import RemoteProtocolError
from common.protocol import Lookup, StockInfo
from common.sockets import free_tcp_ports

from .http import HttpClient

ROOT = Path(__file__).resolve().parents[1]
# How long a server may take to answer after it starts.
READY_TIMEOUT_S = 30.0
# How long a server may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05


class ServerError(RuntimeError):
    """A server did not start; the message quotes the end of its log."""


class Child:
    """One server process in its own process group.

    :param name: how the benchmark names it on the terminal.
    :param argv: what follows the python executable.
    :param log_path: where its stdout and stderr go.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Child:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the group, wait, then SIGKILL the group (a gunicorn worker
        or a grandchild that outlived its parent goes too)."""
        if self.proc is None:
            return
        _killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(predicate: Callable[[], Any], child: Child, what: str, timeout_s: float = READY_TIMEOUT_S) -> Any:
    """Poll ``predicate`` until it returns something truthy.

    :raises ServerError: if ``child`` exits first or ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if not child.alive:
            raise ServerError(f"{child.name} exited before {what}; end of {child.log_path}:\n{child.log_tail()}")
        if time.monotonic() >= deadline:
            raise ServerError(f"{child.name}: no {what} within {timeout_s:g}s; end of {child.log_path}:\n"
                              f"{child.log_tail()}")
        time.sleep(POLL_S)


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


def zmq_ready(endpoint: str) -> Callable[[], bool]:
    """One REQ round trip to the echo server (a fresh socket per try): a
    :class:`Lookup` answered by a :class:`StockInfo`."""
    def ready() -> bool:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            sock.send(codec.encode(Lookup("ping")))
            if not sock.poll(200):
                return False
            codec.decode(sock.recv(), expect=StockInfo)
            return True
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
        self.children: list[Child] = []
        self.cluster = None
        self._tmp = None

    def start(self, name: str, argv: list[str], ready: Callable[[], Any], what: str) -> Child:
        """Start a server and wait until ``ready()`` says it serves."""
        child = Child(name, argv, self.logs / f"{name}.log").start()
        self.children.append(child)
        self._write_pids()
        wait_for(ready, child, what)
        return child

    def frontend(self, config: Path, name: str, cache: bool, cache_size: int | None) -> tuple[Child, int]:
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

    def bare_route(self, config: Path) -> tuple[Child, int]:
        (port,) = free_tcp_ports(1)
        argv = [str(ROOT / "bench" / "bare_route.py"), "--config", str(config), "--port", str(port)]
        child = self.start("bare-route", argv, http_ready(port, "/stocks/GameStart"), "answer on /stocks")
        self.say(f"started the bare Flask route (pid {child.pid}) on 127.0.0.1:{port}")
        return child, port

    def zmq_echo(self) -> tuple[Child, str]:
        (port,) = free_tcp_ports(1)
        endpoint = f"tcp://127.0.0.1:{port}"
        argv = [str(ROOT / "bench" / "zmq_echo.py"), "--endpoint", endpoint]
        child = self.start("zmq-echo", argv, zmq_ready(endpoint), "round trip")
        self.say(f"started the bare ZeroMQ echo (pid {child.pid}) on {endpoint}")
        return child, endpoint

    def spawn_cluster(self) -> Path:
        """Start a private cluster on free loopback ports; returns its config path."""
        import tempfile

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        try:
            from tests.harness.cluster import Cluster
        except ImportError as exc:
            raise ServerError(f"--spawn needs the source checkout's tests/harness ({exc})") from None
        self._tmp = tempfile.TemporaryDirectory(prefix="bazaar-bench-")
        self.say(f"starting a private cluster (broker, catalog, 3 order replicas) in {self._tmp.name}")
        self.cluster = Cluster(Path(self._tmp.name))
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
            child.stop()  # the whole group, even if its leader already exited
            if was_alive:
                self.say(f"stopped {child.name} (process group {child.pid})")
        if self.cluster is not None:
            self.cluster.close()
            self.say("stopped the private cluster")
            self.cluster = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
