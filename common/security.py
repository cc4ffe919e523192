"""CurveZMQ between nodes: the key files, each process's key material, and
the ZAP handler that decides who may connect.

Every socket between nodes runs CURVE (docs/PROTOCOL.md, "Security"): a
server socket proves its node's key and asks its node's ZAP handler about
every client's key; a client socket proves its own key and holds the public
key of the server it dials, so a process on a stolen port cannot pass for
a node. The keys live under ``[security] keys_dir`` (default ``keys/``
next to config.toml)::

    keys/public_keys/<name>.key           public keys: a server accepts exactly these
    keys/private_keys/<name>.key_secret   key pairs: each host holds only its own (mode 0600,
                                          the directory 0700)

in the certificate format of pyzmq's ``zmq.auth`` (``create_certificates``,
``load_certificate``), one pair per name (:func:`key_names`): ``broker``,
``catalog``, ``order-<id>`` for each replica, ``frontend`` (shared by every
frontend), ``monitor``, and ``tools`` (the benchmark's baselines, the test
harness's bus tap and raw sockets).

:class:`ZapHandler` is pyzmq's :class:`zmq.auth.base.Authenticator` without
its thread: its ZAP socket is registered with the node's own poll loop
(:class:`common.node.Loop`), the thread that owns every other socket of the
node. :class:`Gate` puts together what a server node needs: the handler,
its sockets' keys, and the counts its heartbeat carries.

With ``[security] curve = false`` every socket is plain, for debugging
only, and every process says so loudly (a warning) when it starts.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.base import Authenticator

from .config import Config
from .errors import ConfigError
from .logs import get_logger
from .protocol import AuthRefusedEvent, AuthStatus
from .sockets import CurveClient, CurveServer

log = get_logger(__name__)

PUBLIC_DIR = "public_keys"
SECRET_DIR = "private_keys"
FRONTEND = "frontend"
MONITOR = "monitor"
TOOLS = "tools"
BROKER = "broker"
CATALOG = "catalog"

# The same refusal (socket, address, key) is reported at most this often;
# the heartbeat's count has every one.
REPORT_EVERY_S = 1.0
MAX_TRACKED = 1024
# ZAP requests answered per wake-up before the loop looks at its other sockets.
DRAIN_LIMIT = 256
ZAP_VERSION = b"1.0"

CURVE_OFF = ("CURVE IS OFF: every socket of this node is open to anyone who can reach it "
             "([security] curve = false, for debugging only)")
FAILED_HANDSHAKES = ("handshake_failed", "handshake_failed_protocol")


def key_names(config: Config) -> list[str]:
    """Every name that has a key pair: the nodes, then the tools."""
    return [BROKER, CATALOG, *(r.name for r in config.orders), FRONTEND, MONITOR, TOOLS]


def public_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / PUBLIC_DIR / f"{name}.key"


def secret_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / SECRET_DIR / f"{name}.key_secret"


def has_keys(keys_dir: Path) -> bool:
    """True if the directory holds any key at all (public or secret)."""
    return any((keys_dir / PUBLIC_DIR).glob("*.key")) or any((keys_dir / SECRET_DIR).glob("*.key_secret"))


def generate(keys_dir: Path, names: Iterable[str], force: bool = False) -> list[str]:
    """Make a key pair for every name that has neither key file (with
    ``force``: for every name, replacing what is there).

    A name whose public key is here but not its secret key is left alone:
    its node runs on another host, which holds the secret half.

    :returns: the names that got a new key pair.
    """
    public_dir, secret_dir = keys_dir / PUBLIC_DIR, keys_dir / SECRET_DIR
    public_dir.mkdir(parents=True, exist_ok=True)
    secret_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secret_dir, 0o700)
    made = []
    old_umask = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        for name in names:
            public, secret = public_path(keys_dir, name), secret_path(keys_dir, name)
            if not force and (public.exists() or secret.exists()):
                continue
            with tempfile.TemporaryDirectory(dir=secret_dir) as tmp:
                new_public, new_secret = zmq.auth.create_certificates(tmp, name, metadata={"name": name})
                os.chmod(new_secret, 0o600)
                os.replace(new_secret, secret)
                os.chmod(new_public, 0o644)
                os.replace(new_public, public)
            made.append(name)
    finally:
        os.umask(old_umask)
    return made


@dataclass(frozen=True)
class NodeKeys:
    """The key material of one process (``name``): its key pair and every
    public key of the cluster. With CURVE off, :meth:`client` and
    :meth:`server` return None (plain sockets)."""

    name: str
    curve: bool
    keys_dir: Path
    public: bytes = b""
    secret: bytes = field(default=b"", repr=False)
    known: dict[str, bytes] = field(default_factory=dict)

    def client(self, server: str) -> CurveClient | None:
        """Keys for a socket that connects to node ``server``.

        :raises ConfigError: if this host lacks the server's public key.
        """
        if not self.curve:
            return None
        key = self.known.get(server)
        if key is None:
            raise ConfigError(f"no public key of {server!r} ({public_path(self.keys_dir, server)}): "
                              f"copy it from where the keys were made (README.md, 'Running on several hosts')")
        return CurveClient(self.public, self.secret, key)

    def server(self, domain: str) -> CurveServer | None:
        """Keys for a socket this node binds, known to its ZAP handler as ``domain``."""
        if not self.curve:
            return None
        return CurveServer(self.public, self.secret, domain)

    def allowed(self) -> dict[bytes, str]:
        """The public keys a server accepts (every one in ``public_keys``), to their names."""
        return {key: name for name, key in self.known.items()}


def node_keys(config: Config, name: str) -> NodeKeys:
    """Load the key material of ``name`` (a node or tool of :func:`key_names`).
    With CURVE off, log the loud warning and load nothing.

    :raises ConfigError: a key file is missing, unreadable, readable by
        others, or does not match its public half.
    """
    keys_dir = config.security.keys_dir
    if not config.security.curve:
        log.warning(CURVE_OFF, process=name, config=str(config.path))
        return NodeKeys(name, curve=False, keys_dir=keys_dir)
    secret_file = secret_path(keys_dir, name)
    if not secret_file.exists():
        raise ConfigError(f"no key pair for {name!r}: {secret_file} is missing. Run ./run.sh keys to make the "
                          f"keys (or copy this host's files there: README.md, 'Running on several hosts')")
    mode = stat.S_IMODE(secret_file.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"the secret key {secret_file} is readable by others (mode {mode:04o}): "
                          f"chmod 600 {secret_file}")
    public, secret = _load(secret_file)
    if not secret:
        raise ConfigError(f"{secret_file} holds no secret key: make it again with ./run.sh keys --force")
    known = {}
    for path in sorted((keys_dir / PUBLIC_DIR).glob("*.key")):
        known[path.stem] = _load(path)[0]
    if known.get(name, public) != public:
        raise ConfigError(f"{public_path(keys_dir, name)} is not the public half of {secret_file}: "
                          f"copy both from where the keys were made")
    known.setdefault(name, public)
    return NodeKeys(name, curve=True, keys_dir=keys_dir, public=public, secret=secret, known=known)


def _load(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc}") from None
    return public, secret or b""


# --- the ZAP handler ----------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """One refused connection, as reported (``repeated``: the same refusals
    since the last report, not reported one by one)."""

    domain: str
    address: str
    key: str
    reason: str
    repeated: int = 0


class ZapHandler:
    """Answers the ZAP requests of one context (ZeroMQ RFC 27): a CURVE
    client whose key is in ``allowed`` gets in, any other is refused and
    reported to ``on_refused``.

    Build it before any server socket binds; poll :attr:`sock` in the node's
    loop and call :meth:`handle` when it is readable.

    :param allowed: Z85 public key -> name.
    :param on_refused: told of each refusal (at most once per
        :data:`REPORT_EVERY_S` for the same socket, address and key).
    """

    def __init__(self, ctx: zmq.Context, allowed: dict[bytes, str], on_refused: Callable[[Refusal], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = dict(allowed)
        self.on_refused = on_refused
        self.clock = clock
        self.refused = 0
        self._authenticator = Authenticator(ctx)
        self._authenticator.start()  # a REP socket bound at inproc://zeromq.zap.01
        self.sock: zmq.Socket = self._authenticator.zap_socket
        self.sock.setsockopt(zmq.LINGER, 0)
        self._address = ""
        self._reported: dict[tuple[str, str, bytes], list[float | int]] = {}

    def serve_domain(self, domain: str) -> None:
        """Judge the connections of the sockets whose ZAP domain is ``domain``."""
        self._authenticator.configure_curve_callback(domain, self)

    def handle(self) -> None:
        """Answer every waiting request (a loop handler)."""
        for _ in range(DRAIN_LIMIT):
            try:
                request = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.answer(request)

    def answer(self, request: list[bytes]) -> None:
        """Answer one ZAP request: ``[version, id, domain, address, identity,
        mechanism, credentials...]``."""
        self._address = request[3].decode(errors="replace") if len(request) > 3 else "?"
        if len(request) >= 6 and request[5] != b"CURVE":
            # Only a plain socket with a ZAP domain would ask: none of ours. Never let one in.
            domain = request[2].decode(errors="replace")
            self._refuse(domain, request[5], f"mechanism {request[5].decode(errors='replace')}, not CURVE")
            self.sock.send_multipart([ZAP_VERSION, request[1], b"400", b"CURVE only", b"", b""])
            return
        _run_now(self._authenticator.handle_zap_message(request))

    def callback(self, domain: str, key: bytes) -> bool:
        """The Authenticator's question for a CURVE client: may ``key`` (Z85) in?"""
        if key in self.allowed:
            log.debug("accepted", socket=domain, address=self._address, name=self.allowed[key])
            return True
        self._refuse(domain, key, "key not among the cluster's public keys")
        return False

    def close(self) -> None:
        self._authenticator.stop()

    def _refuse(self, domain: str, key: bytes, reason: str) -> None:
        self.refused += 1
        who = (domain, self._address, key)
        now = self.clock()
        seen = self._reported.get(who)
        if seen is not None and now - seen[0] < REPORT_EVERY_S:
            seen[1] += 1
            return
        if len(self._reported) >= MAX_TRACKED:
            self._reported.clear()
        self._reported[who] = [now, 0]
        self.on_refused(Refusal(domain, self._address, key.decode(errors="replace"), reason,
                                repeated=0 if seen is None else int(seen[1])))


def _run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never waits to its end.

    ``Authenticator.handle_zap_message`` is a coroutine so that a credentials
    callback may be async; ours (:meth:`ZapHandler.callback`) is not, so the
    coroutine finishes on its first step and the reply is sent before it returns.
    """
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the ZAP handler waited on something: it must answer at once")


class Gate:
    """A server node's CurveZMQ gate (broker, catalog, order replica).

    With CURVE on it runs the node's :class:`ZapHandler`, hands out the keys
    of the sockets the node binds (:meth:`server`), logs and reports every
    refusal (``report`` gets an :class:`common.protocol.AuthRefusedEvent`,
    which the node publishes), and counts what its heartbeat's
    :class:`common.protocol.AuthStatus` says. Build it before the node binds.

    :param report: publishes an event (the node's bus).
    """

    def __init__(self, ctx: zmq.Context, keys: NodeKeys, report: Callable[[AuthRefusedEvent], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.report = report
        self.clock = clock
        self.failed_handshakes = 0
        self._failures_logged: dict[str, list[float | int]] = {}
        self.zap: ZapHandler | None = None
        if keys.curve:
            self.zap = ZapHandler(ctx, keys.allowed(), self._on_refused, clock)

    def server(self, label: str) -> CurveServer | None:
        """Keys for the server socket ``label`` (``router``, ``xsub``...), which
        refusals will name; None with CURVE off."""
        if self.zap is None:
            return None
        self.zap.serve_domain(label)
        return self.keys.server(label)

    def client(self, server: str) -> CurveClient | None:
        """Keys for a socket of this node that connects to ``server``."""
        return self.keys.client(server)

    def attach(self, loop) -> None:
        """Serve the ZAP socket from the node's :class:`common.node.Loop`."""
        if self.zap is not None:
            loop.add(self.zap.sock, self.zap.handle)

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        """Count (and log, at most once a second per socket) the failed
        handshakes the socket monitor of a server socket reports."""
        if event not in FAILED_HANDSHAKES:
            return
        self.failed_handshakes += 1
        now = self.clock()
        seen = self._failures_logged.get(label)
        if seen is not None and now - seen[0] < REPORT_EVERY_S:
            seen[1] += 1
            return
        self._failures_logged[label] = [now, 0]
        log.warning("refused a connection that failed the handshake (no CURVE key, another mechanism, or "
                    "not this node's public key)", socket=label, endpoint=endpoint, event=event,
                    repeated=0 if seen is None else int(seen[1]))

    def status(self) -> AuthStatus:
        return AuthStatus(curve=self.keys.curve, refused=0 if self.zap is None else self.zap.refused,
                          failed_handshakes=self.failed_handshakes)

    def close(self) -> None:
        if self.zap is not None:
            self.zap.close()

    def _on_refused(self, refusal: Refusal) -> None:
        self.report(AuthRefusedEvent(self.keys.name, socket=refusal.domain, address=refusal.address,
                                     key=refusal.key, reason=refusal.reason, repeated=refusal.repeated))
