"""The catalog is a projection of the order log: losing it costs nothing.

Promises 3 and 12 (docs/ARCHITECTURE.md): the catalog is killed with
SIGKILL, loses its database, or is reset on purpose, all under a load of
lookups, trades and order reads through the HTTP API. While it is down every
endpoint keeps answering (lookups from the cache or the order replicas), and
once it is back it rebuilds from the log by itself: the history checker then
finds every promise kept, the catalog's table equal to the fold of the log
among them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import ROOT, wait_until
from harness.history import History, Load

pytestmark = pytest.mark.slow

# The share of each kind of request that must succeed while the catalog is down.
AVAILABILITY = 0.99


@pytest.fixture
def loaded(cluster_factory):
    """A cluster, a history, and a load of lookups, trades and order reads."""
    cluster = cluster_factory()
    history = History()
    load = Load(history, cluster.http_ports, clients=3, max_ops=100_000, max_seconds=40, lookups=True,
                reads=True, pace_s=0.005)
    yield cluster, history, load
    load.stop()


def acked_after(history: History, count: int, timeout: float = 20) -> None:
    target = len(history.by_status("ok")) + count
    wait_until(lambda: len(history.by_status("ok")) >= target, timeout, f"{count} more acknowledged trades")


def assert_available(history: History, start: float, end: float) -> None:
    for kind in ("lookup", "trade", "read"):
        good, sent = history.answered(kind, start, end)
        assert sent >= 10, f"only {sent} {kind}s were sent while the catalog was down"
        assert good >= AVAILABILITY * sent, f"{kind}s while the catalog was down: {good} of {sent} answered"


class TestCatalogKilled:
    """SIGKILL the catalog under load, keep it down a while, start it again."""

    def test_every_endpoint_answers_while_it_is_down_and_it_catches_up_after(self, loaded):
        cluster, history, load = loaded
        load.start()
        acked_after(history, 30)
        history.note("SIGKILL catalog")
        down = history.now()
        cluster.node("catalog").kill()
        # Long enough for every part to notice: its heartbeats missed for a whole window, and then some.
        wait_until(lambda: cluster.stats()["heard"].get("catalog", 0) > 3 * cluster.config.heartbeat.window_s, 10,
                   "the frontend to miss the catalog for three windows")
        acked_after(history, 100)
        up = history.now()
        history.note("restart catalog")
        cluster.node("catalog").start()
        acked_after(history, 30)
        load.stop()
        assert_available(history, down, up)
        assert_promises_kept(cluster, history)  # the catalog's table is the fold of the whole log among them


class TestCatalogDiskLost:
    """The catalog's database is deleted under load, as a lost disk: it
    starts blank and rebuilds from the order replicas."""

    def test_a_blank_catalog_rebuilds_from_the_log_and_loses_nothing(self, loaded):
        cluster, history, load = loaded
        load.start()
        acked_after(history, 50)
        history.note("SIGKILL catalog, delete its database")
        cluster.node("catalog").kill()
        cluster.wipe("catalog")
        down = history.now()
        cluster.node("catalog").start()
        wait_until(lambda: "caught up with the order log" in cluster.node("catalog").log(), 20,
                   "the blank catalog to catch up")
        history.note("catalog caught up")
        acked_after(history, 30)
        load.stop()
        assert_available(history, down, history.now())
        assert_promises_kept(cluster, history)


class TestResetCatalog:
    """``./run.sh reset catalog`` while the cluster trades: the catalog is
    stopped, its data wiped (``python -m common.cluster reset catalog``, what
    run.sh runs), and started again; the leader stays the same throughout."""

    def test_trades_go_on_and_the_catalog_equals_the_fold_of_the_whole_history(self, loaded):
        cluster, history, load = loaded
        tap = BusTap(cluster)
        try:
            leader, epoch = tap.wait_leader()
            load.start()
            acked_after(history, 50)
            history.note("stop catalog, reset catalog, start catalog")
            cluster.node("catalog").stop()
            reset = subprocess.run([sys.executable, "-m", "common.cluster", "reset", "catalog", "--config",
                                    str(cluster.config_path)], cwd=ROOT, capture_output=True, text=True, timeout=30)
            assert reset.returncode == 0, reset.stderr
            assert "rebuilds" in reset.stdout
            assert not (cluster.data_dir("catalog") / "catalog.sqlite3").exists()
            cluster.node("catalog").start()
            restarted = history.now()
            acked_after(history, 20, timeout=5)  # trades never stopped, and go on
            first = min(op.completed for op in history.ops if op.status == "ok" and op.invoked >= restarted)
            assert first - restarted < 2.0
            load.stop()
            assert tap.wait_leader() == (leader, epoch)  # no election was needed
            assert_promises_kept(cluster, history)
        finally:
            tap.close()
