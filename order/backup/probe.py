"""Whether a node of the cluster runs, as a restore must know before it
touches the data directory: a live pid in a pid file run.sh wrote, or
anything that accepts a connection on a node's bind address.

:func:`probe_target` and :func:`bind_addresses` only read values (the
endpoint, the config); :func:`running` looks at processes and dials.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from common import config as configuration

# How long a probe of a node's address waits for a connection.
PROBE_TIMEOUT_S = 0.5


def probe_target(endpoint: str) -> tuple[int, object] | None:
    """Where to dial to find out whether anything listens at a bind address:
    ``(address family, address)``, None for what cannot be dialled (inproc)."""
    if endpoint.startswith("ipc://"):
        return socket.AF_UNIX, endpoint[len("ipc://"):]
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]")
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


def bind_addresses(config: configuration.Config) -> list[tuple[str, str]]:
    """``(node, endpoint)`` for every address a node of ``config`` listens on."""
    out = [("broker", config.broker.xsub.bind), ("broker", config.broker.xpub.bind),
           ("catalog", config.catalog.endpoint.bind)]
    out += [(r.name, r.endpoint.bind) for r in config.orders]
    host = config.frontend.host if ":" not in config.frontend.host else f"[{config.frontend.host}]"
    out.append(("frontend", f"tcp://{host}:{config.frontend.port}"))
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _listening(endpoint: str) -> bool:
    target = probe_target(endpoint)
    if target is None:
        return False
    family, address = target
    if family == socket.AF_UNIX and not os.path.exists(address):
        return False
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(PROBE_TIMEOUT_S)
        try:
            s.connect(address)
        except OSError:
            return False
    return True


def running(config: configuration.Config, run_dir: Path | None) -> list[str]:
    """Every sign that a node of the cluster runs: a live pid in a pid file
    of ``run_dir``, or anything listening on a node's bind address."""
    signs = []
    if run_dir is not None and run_dir.is_dir():
        for pid_file in sorted(run_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _alive(pid):
                    signs.append(f"{pid_file.stem} runs (pid {pid}, {pid_file})")
    for node, endpoint in bind_addresses(config):
        if _listening(endpoint):
            signs.append(f"something listens on {endpoint} ({node}'s address)")
    return signs
