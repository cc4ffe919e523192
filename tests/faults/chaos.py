"""Seeded chaos: a printed, replayable schedule of faults against a cluster.

A schedule is a list of :class:`Fault` made from a seed alone: at a time, an
action (``kill``, ``pause``, ``blackhole``, ``reset``) on a target (the
leader of the moment, a follower, the catalog, the broker, a frontend, or a
link between two of them), healed after a duration. :func:`run_chaos` plays
it while clients trade and look up through every frontend, then heals
everything, settles unknown outcomes and runs the history checker.

Replay a schedule with the same seed: ``BAZAAR_CHAOS_SEED=N pytest
tests/faults/test_chaos.py`` (the schedule of a failing run is printed).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from harness.bus import BusTap
from harness.checker import check, report, settle
from harness.cluster import Cluster, wait_until
from harness.history import History, Load

TARGETS = ("leader", "follower", "catalog", "broker", "frontend",
           "link:leader-follower", "link:frontend-leader", "link:catalog-broker")
ACTIONS = {
    "leader": ("kill", "pause"), "follower": ("kill", "pause"), "catalog": ("kill", "pause"),
    "broker": ("kill", "pause"), "frontend": ("kill",),
    "link:leader-follower": ("blackhole", "reset"), "link:frontend-leader": ("blackhole", "reset"),
    "link:catalog-broker": ("blackhole", "reset"),
}


@dataclass(frozen=True)
class Fault:
    at: float
    action: str
    target: str
    duration: float

    def __str__(self) -> str:
        return f"t={self.at:6.2f}s {self.action:<9} {self.target:<22} for {self.duration:.2f}s"


def schedule(seed: int, seconds: float) -> list[Fault]:
    """Faults one after another (each healed before the next), from ``seed``."""
    rng = random.Random(seed)
    faults, t = [], 1.0
    while t < seconds - 1.0:
        target = rng.choice(TARGETS)
        action = rng.choice(ACTIONS[target])
        duration = round(rng.uniform(0.2, 1.5), 2)
        faults.append(Fault(round(t, 2), action, target, duration))
        t += duration + rng.uniform(0.3, 1.2)
    return faults


class Chaos:
    """Plays a schedule against ``cluster``; ``history.note`` records each step."""

    def __init__(self, cluster: Cluster, tap: BusTap, history: History) -> None:
        self.cluster = cluster
        self.tap = tap
        self.history = history
        self.injected = 0

    def _leader(self) -> int:
        got = self.tap.leader()
        return got[0] if got else 1

    def _resolve(self, target: str) -> tuple[str, object]:
        leader = self._leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        if target == "leader":
            return f"order-{leader}", self.cluster.replica(leader)
        if target == "follower":
            return f"order-{follower}", self.cluster.replica(follower)
        if target in ("catalog", "broker", "frontend"):
            return target, self.cluster.node(target)
        a, b = target.split(":")[1].split("-")
        names = {"leader": f"order-{leader}", "follower": f"order-{follower}", "frontend": "frontend",
                 "catalog": "catalog", "broker": "broker"}
        return f"{names[a]}<->{names[b]}", self.cluster.links_between(names[a], names[b])

    def play(self, faults: list[Fault], stop: threading.Event) -> None:
        start = time.monotonic()
        for fault in faults:
            while not stop.is_set() and time.monotonic() - start < fault.at:
                stop.wait(0.01)
            if stop.is_set():
                return
            name, handle = self._resolve(fault.target)
            self.history.note(f"{fault.action} {name}")
            self.injected += 1
            self._apply(fault.action, handle)
            stop.wait(fault.duration)
            self.history.note(f"heal {name}")
            self._heal(fault.action, handle)

    def _apply(self, action: str, handle) -> None:
        if action == "kill":
            handle.kill()
        elif action == "pause":
            handle.pause()
        else:
            for link in handle:
                getattr(link, action)()

    def _heal(self, action: str, handle) -> None:
        if action == "kill":
            handle.start()
        elif action == "pause":
            handle.resume()
        else:
            for link in handle:
                link.restore()

    def heal_everything(self) -> None:
        for node in self.cluster.nodes.values():
            node.resume()
            if not node.alive:
                node.start()
        for link in self.cluster.hub.links.values():
            link.restore()


def run_chaos(cluster: Cluster, seed: int, seconds: float, clients: int = 4) -> dict:
    """Play the seed's schedule under load, then check every promise.

    :returns: figures (faults injected, trades acknowledged, ...).
    :raises AssertionError: with the schedule and the broken promises.
    """
    faults = schedule(seed, seconds)
    plan = "\n".join(f"  {f}" for f in faults)
    print(f"chaos seed {seed}, {seconds:g}s, {len(faults)} faults:\n{plan}", flush=True)
    tap = BusTap(cluster)
    history = History()
    chaos = Chaos(cluster, tap, history)
    load = Load(history, cluster.http_ports, clients=clients, max_ops=10**6, max_seconds=seconds + 5,
                seed=seed, lookups=True)
    stop = threading.Event()
    try:
        tap.wait_leader()
        load.start()
        chaos.play(faults, stop)
        chaos.heal_everything()
        cluster.wait_ready(timeout=30)
        target = len(history.by_status("ok")) + 10
        wait_until(lambda: len(history.by_status("ok")) >= target, 30, "trading to resume after the chaos")
        load.stop()
        settle(cluster, history)
        violations = check(cluster, history)
    finally:
        stop.set()
        load.stop()
        tap.close()
    figures = {
        "seed": seed, "seconds": seconds, "faults": chaos.injected,
        "acknowledged": len(history.by_status("ok")), "refused": len(history.by_status("fail")),
        "settled_by_retry": sum(1 for op in history.ops if "settled by retry" in op.detail),
        "violations": len(violations),
    }
    print(f"chaos figures: {figures}", flush=True)
    if violations:
        raise AssertionError(f"chaos seed {seed} broke promises; schedule:\n{plan}\n{report(history, violations)}")
    return figures
