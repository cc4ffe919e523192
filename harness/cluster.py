"""A whole Bazaar cluster of real processes on free loopback ports.

:class:`Cluster` writes a config.toml with fresh ports and a data directory
under a directory of the caller's (by default every node on 127.0.0.1; with
``addresses``, each node on a loopback address of its own, as on several
hosts: :func:`spread_addresses`), starts every node as ``python -m <node>``
in a process group of its own, and hands out :class:`harness.process.Process`
handles to kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT), stop (SIGTERM)
and restart any of them. :meth:`Cluster.close` SIGKILLs whatever is left, so
a failing test (or benchmark) never leaves processes behind.

Waiting is always on a condition (an HTTP answer, a heartbeat, a log line)
with a bound, never a fixed sleep: see :func:`harness.process.wait_until`.

Every cluster runs CurveZMQ, as a real one does: the key pairs of every node
and tool are made in ``<workdir>/keys`` (a few milliseconds), and a test that
opens its own sockets to a node gets the ``tools`` key for them from
:meth:`Cluster.curve` or :meth:`Cluster.secure`. ``settings={"security":
{"curve": False}}`` runs one without.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from common import codec, security
from common import config as configuration
from common.protocol import Lookup, StockInfo
from common.sockets import CurveClient, apply_curve

from .process import ROOT, Process, Timeout, wait_until

__all__ = ["Cluster", "Http", "Process", "Reply", "Timeout", "initial_stocks", "loopback_problem",
           "spread_addresses", "wait_until"]

LOOPBACK = "127.0.0.1"
# What a node in ``Cluster.bind_any`` binds: every address of the machine.
ANY_ADDRESS = "0.0.0.0"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    elapsed: float

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def error(self) -> Any:
        return self.body.get("error") if isinstance(self.body, dict) else None


class Http:
    """A keep-alive HTTP client for one frontend (one connection: not thread-safe).

    :param record: called as ``record(method, path, body, status, reply body,
        start, end)`` for every request (status None when it failed), to keep
        a history of everything the clients saw.
    """

    def __init__(self, port: int, timeout: float = 10.0, record: Callable | None = None,
                 host: str = LOOPBACK) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.record = record
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            start = time.monotonic()
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if self.record is not None:
                    self.record(method, path, body, None, type(exc).__name__, start, time.monotonic())
                if attempt == 2:
                    raise
                continue
            elapsed = time.monotonic() - start
            try:
                parsed = json.loads(payload) if payload else None
            except ValueError:
                parsed = payload
            if self.record is not None:
                self.record(method, path, body, resp.status, parsed, start, start + elapsed)
            return Reply(resp.status, parsed, dict(resp.getheaders()), elapsed)
        raise AssertionError("unreachable")

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Reply:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Reply:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Cluster:
    """A cluster under ``workdir``. Use :func:`start_cluster` or the
    ``cluster_factory`` fixture rather than building one by hand.

    :param settings: extra config.toml keys, ``{"heartbeat": {"interval_ms": 50}}``.
    :param addresses: node name -> the address it listens on (and others reach
        it at), for nodes not on 127.0.0.1 (:func:`spread_addresses` gives
        every node one of its own). Every port is found free on its address.
    :param bind_any: nodes that bind every address (``tcp://0.0.0.0:<port>``,
        as README.md's several-host example does) while the others connect to
        their own address: their ``bind`` differs from their ``endpoint``.
    """

    workdir: Path
    replicas: int = 3
    frontends: int = 1
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    frontend_args: list[str] = field(default_factory=list)
    first_start_args: dict[str, list[str]] = field(default_factory=dict)
    links: bool = False
    data_dirs: dict[str, Path] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    bind_any: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster_id = f"test-{uuid.uuid4().hex[:8]}"  # every node's data is kept as this cluster's
        if self.links and (self.addresses or self.bind_any):
            raise ValueError("links and per-node addresses do not go together (links listen on 127.0.0.1)")
        frontends = ["frontend" if k == 1 else f"frontend-{k}" for k in range(1, self.frontends + 1)]
        owners = {"xsub": "broker", "xpub": "broker", "catalog": "catalog",
                  **{f"order-{i}": f"order-{i}" for i in range(1, self.replicas + 1)}}
        # Where each endpoint (and each frontend's HTTP) listens, and where it is reached.
        self.hosts = {name: self.addresses.get(node, LOOPBACK) for name, node in owners.items()}
        self.http_hosts = [self.addresses.get(name, LOOPBACK) for name in frontends]
        binds = [ANY_ADDRESS if owners[name] in self.bind_any else host for name, host in self.hosts.items()]
        ports = _free_ports(binds + self.http_hosts)
        self.ports = dict(zip(self.hosts, ports))
        self.bind_hosts = dict(zip(self.hosts, binds))
        self.http_ports = ports[len(self.hosts):]
        self.hub = None
        if self.links:
            from .links import LinkHub

            self.hub = LinkHub(avoid=set(ports))
        self.keys_dir = self.workdir / "keys"
        self.config_path = self.workdir / "config.toml"
        self.config_path.write_text(self.config_text())
        self.config = configuration.load(self.config_path)
        security.generate(self.keys_dir, security.key_names(self.config))
        self._keys: dict[str, security.NodeKeys] = {}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("BAZAAR_LOG_FORMAT", None)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.nodes: dict[str, Process] = {}

        def add(name: str, argv: list[str]) -> None:
            config = self.config_path
            if self.hub is not None:  # this node's own view: every other node behind a link
                config = self.workdir / f"config-{name}.toml"
                config.write_text(self.config_text(view=name))
            own = ["--data-dir", str(self.data_dirs[name])] if name in self.data_dirs else []
            self.nodes[name] = Process(name, [*argv[:2], "--config", str(config), *own, *argv[2:]],
                                       logs / f"{name}.log", env)

        add("broker", ["-m", "broker"])
        add("catalog", ["-m", "catalog"])
        for i in range(1, self.replicas + 1):
            add(f"order-{i}", ["-m", "order", "--id", str(i)])
        for name, host, port in zip(frontends, self.http_hosts, self.http_ports):
            add(name, ["-m", "frontend", "--host", host, "--port", str(port), "--name", name, *self.frontend_args])
        self.clients: list[Http] = []

    def _seen(self, view: str | None, target: str) -> str:
        """``target``'s endpoint as node ``view`` reaches it (through a link
        when the cluster has links, unless the node is reaching itself)."""
        node = "broker" if target in ("xsub", "xpub") else target
        if view is None or view == node or self.hub is None:
            return self.endpoint(target)
        key = (view, target)
        if key not in self.hub.links:
            self.hub.add(view, target, self.ports[target])
        return f"tcp://{LOOPBACK}:{self.hub.links[key].port}"

    def link(self, source: str, target: str):
        """The link ``source`` uses to reach ``target`` (``xsub``/``xpub`` for the broker)."""
        return self.hub.link(source, target)

    def links_between(self, a: str, b: str) -> list:
        """Every link between two nodes, both directions (broker: both ports)."""
        names = {a, b}
        return [link for (src, dst), link in self.hub.links.items()
                if {src, "broker" if dst in ("xsub", "xpub") else dst} == names]

    def config_text(self, view: str | None = None) -> str:
        real = lambda name: f"tcp://{self.bind_hosts[name]}:{self.ports[name]}"  # noqa: E731
        s = {
            "cluster": {"id": self.cluster_id, "data_dir": str(self.workdir / "data"), "log_level": "info",
                        "stocks_csv": str(ROOT / "catalog" / "stocks.csv")},
            "heartbeat": {"interval_ms": 100, "liveness": 3},
            "timeouts": {"request_ms": 1000, "lookup_attempts": 2, "trade_deadline_ms": 4000},
            "broker": {"xsub": self._seen(view, "xsub"), "xpub": self._seen(view, "xpub"),
                       "xsub_bind": real("xsub"), "xpub_bind": real("xpub")},
            "catalog": {"endpoint": self._seen(view, "catalog"), "bind": real("catalog")},
            "frontend": {"host": self.http_hosts[0], "port": self.http_ports[0], "cache": True, "cache_size": 10},
            "security": {"curve": True, "keys_dir": str(self.keys_dir)},
        }
        for section, values in self.settings.items():
            s.setdefault(section, {}).update(values)
        lines = []
        for section, values in s.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        for i in range(1, self.replicas + 1):
            lines += ["[[order]]", f"id = {i}", f'endpoint = "{self._seen(view, f"order-{i}")}"',
                      f'bind = "{real(f"order-{i}")}"']
        return "\n".join(lines) + "\n"

    # --- life cycle -------------------------------------------------------------

    def data_dir(self, name: str) -> Path:
        """Where node ``name`` keeps its database (``data_dirs`` may give a node its own disk)."""
        return self.data_dirs.get(name, self.workdir / "data")

    def seed(self, trades: int, catalog: bool = True) -> int:
        """Before :meth:`start`: a history of ``trades`` trades in every
        replica's database, and the catalog's table folded from it unless
        ``catalog`` is False (it then rebuilds from the log at start)
        (:func:`harness.seed.seed_history`). :returns: the last log index."""
        from .seed import seed_history

        return seed_history(self.workdir / "data", self.cluster_id, ROOT / "catalog" / "stocks.csv",
                            list(range(1, self.replicas + 1)), trades, catalog=catalog)

    def wipe(self, name: str) -> None:
        """What ``./run.sh reset <name>`` does to a stopped node: its database,
        and the marker that says it had one, are gone; it starts blank."""
        data = self.data_dir(name)
        for path in (data / f"{name}.sqlite3", data / f"{name}.sqlite3-wal", data / f"{name}.sqlite3-shm",
                     data / f"{name}.id"):
            path.unlink(missing_ok=True)

    def start(self, timeout: float = 30) -> Cluster:
        """Start every node (``first_start_args`` apply to this start only)."""
        for name, node in self.nodes.items():
            node.start(self.first_start_args.get(name))
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> dict:
        """Until every frontend knows a leader and has heard every node."""
        names = {n for n in self.nodes if not n.startswith("frontend")}

        def ready() -> dict | None:
            for port in self.http_ports:
                try:
                    stats = self.http(port).get("/stats").data
                except OSError:
                    return None
                if not stats or stats["leader"]["leader"] is None or not names <= set(stats["heard"]):
                    return None
            return stats

        return wait_until(ready, timeout, "the cluster to come up")

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for node in self.nodes.values():
            node.kill()
        if self.hub is not None:
            self.hub.close()

    # --- handles ------------------------------------------------------------------

    def node(self, name: str) -> Process:
        return self.nodes[name]

    def replica(self, i: int) -> Process:
        return self.nodes[f"order-{i}"]

    @property
    def frontend(self) -> Process:
        return self.nodes["frontend"]

    def http(self, port: int | None = None) -> Http:
        """A client of the frontend on ``port`` (the first by default), closed with the cluster."""
        client = Http(port or self.http_ports[0], host=self.http_host(port))
        self.clients.append(client)
        return client

    def http_host(self, port: int | None = None) -> str:
        """The address of the frontend on ``port`` (the first by default)."""
        return self.http_hosts[self.http_ports.index(port) if port else 0]

    @property
    def http_addresses(self) -> list[tuple[str, int]]:
        """Every frontend's ``(address, port)``, for :class:`harness.history.Load`."""
        return list(zip(self.http_hosts, self.http_ports))

    @property
    def api(self) -> Http:
        if not hasattr(self, "_api"):
            self._api = self.http()
        return self._api

    def endpoint(self, name: str) -> str:
        """Where others reach ``name`` (``xsub``/``xpub`` for the broker's two sides)."""
        return f"tcp://{self.hosts[name]}:{self.ports[name]}"

    # --- keys -----------------------------------------------------------------------

    @property
    def curve_on(self) -> bool:
        return self.config.security.curve

    def keys(self, name: str = security.TOOLS) -> security.NodeKeys:
        """The key material of ``name`` (a node or tool), as that process loads it."""
        if name not in self._keys:
            self._keys[name] = security.node_keys(self.config, name)
        return self._keys[name]

    def curve(self, target: str, name: str = security.TOOLS) -> CurveClient | None:
        """Keys for a socket of ``name`` (the ``tools`` key by default) that
        connects to ``target`` (a node, or ``xsub``/``xpub`` for the broker);
        None when the cluster runs without CURVE."""
        return self.keys(name).client("broker" if target in ("xsub", "xpub") else target)

    def secure(self, sock: zmq.Socket, target: str, name: str = security.TOOLS) -> zmq.Socket:
        """Give a socket of the test's own the keys to talk to ``target``
        (call before it connects)."""
        return apply_curve(sock, self.curve(target, name))

    # --- state, read straight from the databases -----------------------------

    def stats(self, port: int | None = None) -> dict:
        return self.http(port).get("/stats").data

    def leader(self, timeout: float = 10) -> int:
        """The replica every live replica's database agrees leads (from the
        frontend's view, confirmed by a heartbeat)."""
        return wait_until(lambda: self.api.get("/stats").data["leader"]["leader"], timeout, "a leader")

    def _replica_db(self, i: int):
        path = self.data_dir(f"order-{i}") / f"order-{i}.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def order_log(self, i: int) -> list[tuple]:
        """Replica ``i``'s trade entries, carried out or refused, by index:
        ``(txn, request_id, name, quantity, side, status)`` (``txn`` None for a refusal)."""
        with self._replica_db(i) as db:
            return db.execute(
                "SELECT txn, request_id, name, quantity, side, status FROM log WHERE request_id IS NOT NULL "
                "ORDER BY idx"
            ).fetchall()

    def trades(self, i: int) -> list[tuple]:
        """Replica ``i``'s trades carried out, by index: ``(txn, request_id, name, quantity, side)``."""
        return [row[:5] for row in self.order_log(i) if row[5] == "ok"]

    def genesis(self, i: int = 1) -> dict[str, int]:
        """The initial quantity of every stock, from replica ``i``'s first log entry."""
        with self._replica_db(i) as db:
            row = db.execute("SELECT genesis FROM log WHERE idx = 1").fetchone()
        return {} if row is None or row[0] is None else {name: q for name, _, q, _ in json.loads(row[0])}

    def last_index(self, i: int) -> int:
        """The last index of replica ``i``'s log."""
        with self._replica_db(i) as db:
            return db.execute("SELECT COALESCE(MAX(idx), 0) FROM log").fetchone()[0]

    def _catalog_db(self):
        path = self.data_dir("catalog") / "catalog.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def stocks(self, settled: bool = True, timeout: float = 15) -> dict[str, tuple[float, int, int, int]]:
        """The catalog's table: ``name -> (price, quantity, volume, version)``;
        with ``settled``, once the catalog has applied what a majority of
        replicas hold (the catalog follows the log: a moment behind a trade's
        acknowledgement)."""
        if settled:
            self.wait_catalog(timeout)
        with self._catalog_db() as db:
            return {r[0]: tuple(r[1:]) for r in db.execute("SELECT name, price, quantity, volume, version FROM stocks")}

    def wait_catalog(self, timeout: float = 15) -> int:
        """Until the catalog has applied every entry a majority of replicas
        hold. :returns: that index."""
        lasts = sorted((self.last_index(i) for i in range(1, self.replicas + 1)
                        if (self.data_dir(f"order-{i}") / f"order-{i}.sqlite3").exists()), reverse=True)
        target = lasts[self.replicas // 2] if len(lasts) > self.replicas // 2 else 0
        wait_until(lambda: self.catalog_applied() >= target, timeout, f"the catalog to apply the log up to {target}",
                   interval=0.02)
        return target

    def wait_lookups(self, stock: str = "FishCo", timeout: float = 10) -> None:
        """Until the catalog itself answers a lookup: a started catalog
        answers ``behind`` until it has folded the log up to the commit it
        knows of (meanwhile the frontend asks the replicas, so an HTTP
        lookup would not tell)."""
        def answered() -> bool:
            ctx = zmq.Context()
            sock = self.secure(ctx.socket(zmq.REQ), "catalog")
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.connect(self.endpoint("catalog"))
                sock.send(codec.encode(Lookup(stock)))
                return bool(sock.poll(500)) and isinstance(codec.decode(sock.recv()), StockInfo)
            finally:
                sock.close(linger=0)
                ctx.term()

        wait_until(answered, timeout, "the catalog to answer lookups")

    def catalog_applied(self) -> int:
        """How far the catalog's table folds the log (0 when it has no file yet)."""
        if not (self.data_dir("catalog") / "catalog.sqlite3").exists():
            return 0
        try:
            with self._catalog_db() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'applied'").fetchone()
        except sqlite3.OperationalError:  # the catalog is creating its file this very moment
            return 0
        return 0 if row is None else row[0]


def spread_addresses(replicas: int = 3, frontends: int = 1, first: int = 2) -> dict[str, str]:
    """A loopback address of its own for every node: the broker on
    127.0.0.<first>, then the catalog, the replicas and the frontends."""
    names = ["broker", "catalog", *(f"order-{i}" for i in range(1, replicas + 1)),
             *("frontend" if k == 1 else f"frontend-{k}" for k in range(1, frontends + 1))]
    return {name: f"127.0.0.{first + k}" for k, name in enumerate(names)}


def loopback_problem(addresses: list[str]) -> str | None:
    """Why these addresses cannot be listened on here (None if they can).
    Linux routes all of 127.0.0.0/8 to the loopback interface; other systems
    (macOS) have only 127.0.0.1 unless aliases are added."""
    for address in addresses:
        try:
            with socket.socket() as s:
                s.bind((address, 0))
        except OSError as exc:
            return f"cannot listen on {address} on this machine ({exc}); it needs the loopback range 127.0.0.0/8"
    return None


def _free_ports(hosts: list[str]) -> list[int]:
    """A TCP port free on each host, all held open until all are found (so
    that a port on 0.0.0.0 is never also handed out on a single address)."""
    held = []
    try:
        for host in hosts:
            s = socket.socket()
            held.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def initial_stocks() -> dict[str, int]:
    import csv

    with (ROOT / "catalog" / "stocks.csv").open() as fh:
        return {row["name"]: int(row["quantity"]) for row in csv.DictReader(fh)}
