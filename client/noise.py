"""How busy the machine was during a benchmark phase, and with what.

The machine is shared: other work competes for its two cores, and a figure
taken while something else ran is worth less. :func:`sample` reads the
machine's CPU time (``/proc/stat``) and the CPU time of each of the
benchmark's *parties* (``/proc/<pid>/stat``): the clients (the benchmark and
its worker processes), each server it started, and each backend node it
drives. :func:`between` turns two samples into cores: busy in all, used by
each party, and used by everything else (the *other tenants*). Linux only;
elsewhere every figure is None.

A party is named by a set of process ids and a set of process groups; a
process counts for the first party whose pids or groups hold it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

_TICKS_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Backend node packages (``python -m <name>``), for :func:`backend_pids`.
BACKEND_MODULES = ("broker", "catalog", "order")

Parties = dict[str, tuple[set[int], set[int]]]  # name -> (pids, process groups)


def _machine_ticks() -> int | None:
    """Busy jiffies of all CPUs since boot."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def _party_ticks(parties: Parties) -> dict[str, int]:
    """utime + stime of every live process, summed per party."""
    totals = dict.fromkeys(parties, 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        rest = text[text.rfind(")") + 2:].split()  # the fields after "(comm)", from the state on
        try:
            pgid, ticks = int(rest[2]), int(rest[11]) + int(rest[12])
        except (IndexError, ValueError):
            continue
        pid = int(entry.name)
        for name, (pids, pgids) in parties.items():
            if pid in pids or pgid in pgids:
                totals[name] += ticks
                break
    return totals


def sample(parties: Parties) -> dict[str, Any]:
    """A reading of the clock, the machine's CPU time and each party's."""
    machine = _machine_ticks()
    return {"t": time.monotonic(), "machine": machine,
            "parties": _party_ticks(parties) if machine is not None else {}}


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Average cores used between two :func:`sample` readings.

    :returns: ``busy_cores`` (the whole machine), ``bench_cores`` (every
        party), ``client_cores`` (the party ``clients``), ``server_cores``
        (the other parties), ``other_cores`` (everything else: the other
        tenants), ``cpus``, and ``parties`` (cores per party).
    """
    wall = after["t"] - before["t"]
    if before["machine"] is None or after["machine"] is None or wall <= 0:
        return {"busy_cores": None, "bench_cores": None, "client_cores": None, "server_cores": None,
                "other_cores": None, "cpus": os.cpu_count(), "parties": {}}

    def cores(ticks: int) -> float:
        return ticks / _TICKS_S / wall

    busy = cores(after["machine"] - before["machine"])
    parties = {name: round(cores(after["parties"][name] - before["parties"].get(name, 0)), 3)
               for name in after["parties"]}
    ours = sum(parties.values())
    clients = parties.get("clients", 0.0)
    return {"busy_cores": round(busy, 3), "bench_cores": round(ours, 3), "client_cores": round(clients, 3),
            "server_cores": round(ours - clients, 3), "other_cores": round(max(0.0, busy - ours), 3),
            "cpus": os.cpu_count(), "parties": parties}


def loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def backend_pids(config_path: Path) -> dict[str, int]:
    """The backend nodes (broker, catalog, order replicas) running with this
    config file, found by their command lines, so that their CPU counts as the
    benchmark's rather than another tenant's.

    :returns: node name (``broker``, ``catalog``, ``order-2``) -> pid.
    """
    target = Path(config_path).resolve()
    found: dict[str, int] = {}
    if not os.path.isdir("/proc"):
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace") for a in Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")]
            cwd = Path(os.readlink(f"/proc/{entry.name}/cwd"))
        except OSError:
            continue
        module, config, node_id = _arg(args, "-m"), _arg(args, "--config"), _arg(args, "--id")
        if module in BACKEND_MODULES and config and (cwd / config).resolve() == target:
            found[f"{module}-{node_id}" if node_id else module] = int(entry.name)
    return found


def _arg(args: list[str], flag: str) -> str | None:
    """The value after ``flag`` in an argument list, if any."""
    try:
        return args[args.index(flag) + 1]
    except (ValueError, IndexError):
        return None
