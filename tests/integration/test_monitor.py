"""The monitor (``python -m broker.monitor --json``) against real clusters.

The monitor runs as a subprocess and its JSON lines are read through a pipe
with a deadline; replicas and the broker are killed with SIGKILL and
restarted, and what the monitor derives is checked: a dead node within the
liveness window, a new leader, a node back and caught up, the bus's gap when
the broker restarts and the heartbeats flowing again after it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from broker.monitor.state import SETTLE_S
from harness.cluster import ROOT, Timeout

pytestmark = pytest.mark.slow

INTERVAL_S = 0.1  # the harness's heartbeat.interval_ms
WINDOW_S = 0.3  # interval x liveness (3)
# A busy two-core machine may run the monitor late; the wait is bounded by the
# window plus this, while the event's own silent_s says how long the node was silent.
SLACK_S = 2.0
NODES = ["broker", "catalog", "order-1", "order-2", "order-3", "frontend"]

Line = dict[str, Any]


class Monitor:
    """One ``python -m broker.monitor --json`` process and the lines it printed."""

    def __init__(self, config_path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker.monitor", "--config", str(config_path), "--json", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[Line] = []
        self.stderr: list[str] = []
        self._queue: queue.Queue[Line | None] = queue.Queue()
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            self._queue.put(json.loads(raw))
        self._queue.put(None)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self.stderr.append(raw)

    def mark(self) -> int:
        """A position in the lines: :meth:`wait_for` can look from there."""
        self._pull()
        return len(self.lines)

    def wait_for(self, predicate: Callable[[Line], bool], timeout: float, what: str, since: int = 0) -> Line:
        """The first line from ``since`` on that matches, reading more until ``timeout``."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for line in self.lines[checked:]:
                if predicate(line):
                    return line
            checked = max(checked, len(self.lines))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"timed out after {timeout}s waiting for {what}; stderr: {''.join(self.stderr)[-2000:]}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the monitor exited ({self.proc.poll()}) before {what}: {''.join(self.stderr)}")
            self.lines.append(line)

    def derived(self, kind: str, node: str | None = None, timeout: float = 15, since: int = 0,
                where: Callable[[Line], bool] = lambda line: True) -> Line:
        return self.wait_for(
            lambda line: line["type"] == "derived" and line["kind"] == kind
            and (node is None or line["node"] == node) and where(line),
            timeout, f"derived {kind} of {node or 'any node'}", since)

    def found(self, since: int, predicate: Callable[[Line], bool]) -> list[Line]:
        self._pull()
        return [line for line in self.lines[since:] if predicate(line)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig``; returns the exit status once the pipes are read to the end."""
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def _pull(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)


@pytest.fixture
def monitor_factory():
    started: list[Monitor] = []

    def start(config_path, *args: str) -> Monitor:
        monitor = Monitor(config_path, *args)
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        monitor.kill()


def wait_all_seen(monitor: Monitor, since: int = 0) -> None:
    for node in NODES:
        monitor.derived("node_seen", node, since=since)
    monitor.derived("leader_changed", since=since)


def is_derived(kind: str, node: str | None = None) -> Callable[[Line], bool]:
    return lambda line: line["type"] == "derived" and line["kind"] == kind and (node is None or line["node"] == node)


class TestReplicaKilled:
    """A replica's process dies (SIGKILL) and is started again."""

    def test_follower(self, cluster_factory, monitor_factory):
        cluster = cluster_factory()
        monitor = monitor_factory(cluster.config_path)
        wait_all_seen(monitor)
        leader = cluster.leader()
        victim = f"order-{next(i for i in (1, 2, 3) if i != leader)}"

        mark = monitor.mark()
        cluster.node(victim).kill()
        dead = monitor.derived("node_dead", victim, timeout=WINDOW_S + SLACK_S, since=mark)
        assert dead["reason"] == "silent"
        assert WINDOW_S <= dead["silent_s"] < WINDOW_S + SLACK_S
        assert not monitor.found(mark, is_derived("leader_changed"))
        assert not monitor.found(mark, is_derived("leader_lost"))

        mark = monitor.mark()
        cluster.node(victim).start()
        back = monitor.derived("node_back", victim, since=mark)
        assert back["restarted"] is True and back["previous_incarnation"] == dead["incarnation"]
        caught = monitor.derived("caught_up", victim, since=mark)
        assert caught["leader"] == leader

    def test_leader(self, cluster_factory, monitor_factory):
        cluster = cluster_factory()
        monitor = monitor_factory(cluster.config_path)
        wait_all_seen(monitor)
        leader = cluster.leader()
        epoch = monitor.derived("leader_changed", where=lambda line: line["leader"] == leader)["epoch"]
        victim = f"order-{leader}"

        mark = monitor.mark()
        cluster.node(victim).kill()
        dead = monitor.derived("node_dead", victim, timeout=WINDOW_S + SLACK_S, since=mark)
        assert WINDOW_S <= dead["silent_s"] < WINDOW_S + SLACK_S
        # Failover is faster than the liveness window, so a new leader is usually
        # known before the old one is declared dead (then no leader_lost comes).
        for lost in monitor.found(mark, is_derived("leader_lost")):
            assert (lost["node"], lost["leader"], lost["epoch"]) == (victim, leader, epoch)
        changed = monitor.derived("leader_changed", timeout=10, since=mark)
        assert changed["leader"] != leader and changed["epoch"] > epoch
        assert changed["previous"] == leader and changed["node"] == f"order-{changed['leader']}"

        mark = monitor.mark()
        cluster.node(victim).start()
        back = monitor.derived("node_back", victim, since=mark)
        assert back["restarted"] is True
        caught = monitor.derived("caught_up", victim, since=mark)
        assert caught["leader"] == changed["leader"]
        # The old leader came back as a follower: no new leader because of it.
        assert not monitor.found(mark, is_derived("leader_changed"))


class TestBrokerRestarted:
    """The broker is killed and started again: every node's PUB and the
    monitor's SUB must reconnect by themselves."""

    def test_down(self, cluster_factory, monitor_factory):
        cluster = cluster_factory()
        monitor = monitor_factory(cluster.config_path)
        wait_all_seen(monitor)

        mark = monitor.mark()
        cluster.node("broker").kill()
        lost = monitor.derived("bus_disconnected", timeout=5, since=mark)
        assert lost["node"] == "monitor" and lost["event"] == "disconnected"
        monitor.derived("node_dead", "broker", timeout=WINDOW_S + SLACK_S, since=mark)
        monitor.wait_for(lambda line: line["type"] == "socket" and line["event"] == "connect_retried", 5,
                         "the monitor's SUB to retry", since=mark)

        cluster.node("broker").start()
        connected = monitor.derived("bus_connected", timeout=15, since=mark)
        assert connected["down_s"] > 0 and connected["retries"] >= 1
        back = monitor.derived("node_back", "broker", since=mark)
        assert back["restarted"] is True
        after = monitor.mark()
        for node in NODES:
            monitor.wait_for(lambda line, n=node: line["type"] == "bus" and line["topic"] == "hb"
                             and line["message"]["node"] == n, 15, f"a heartbeat from {node} after the restart",
                             since=after)
        # Past the settle time the gap is over; no node but the broker was taken for dead.
        monitor.wait_for(lambda line: line["time"] > connected["time"] + WINDOW_S + SETTLE_S + 0.2, 15,
                         "the settle time to pass", since=after)
        dead = [line["node"] for line in monitor.found(mark, is_derived("node_dead"))]
        assert dead == ["broker"]
        cluster.wait_ready()


class TestMonitorLifeCycle:
    """The monitor started before the cluster; stopped by SIGINT and SIGTERM."""

    def test_started_first_and_stopped_cleanly(self, cluster_factory, monitor_factory):
        cluster = cluster_factory(start=False)
        first = monitor_factory(cluster.config_path)
        only_derived = monitor_factory(cluster.config_path, "--topic", "derived")
        down = first.derived("bus_disconnected", timeout=5)
        assert down["event"] == "connect_retried"

        cluster.start()
        for monitor in (first, only_derived):
            monitor.derived("bus_connected", timeout=15)
            wait_all_seen(monitor)
        assert {line["type"] for line in only_derived.found(0, lambda line: True)} == {"derived"}

        assert first.stop(signal.SIGINT) == 0
        assert only_derived.stop(signal.SIGTERM) == 0
        for monitor in (first, only_derived):
            assert "Traceback" not in "".join(monitor.stderr)
