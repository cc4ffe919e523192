"""Order replicas killed with SIGKILL under a load of concurrent trades.

Each scenario runs trading clients through the HTTP API, kills replicas at
chosen moments, lets the load finish, then settles unknown outcomes with
their Idempotency-Keys and checks every promise on the recorded history and
the final databases (harness/checker.py): no acknowledged trade lost or
changed, no duplicate, no gap, identical logs on every replica, reads agree,
refusals durable and right, and the catalog equal to the fold of the log.
"""

from __future__ import annotations

import time

import pytest
import zmq

from common import codec
from common.protocol import CaughtUpEvent, PlaceTrade
from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import wait_until
from harness.history import History, Load

pytestmark = pytest.mark.slow


@pytest.fixture
def trading(cluster_factory):
    """A cluster, a bus tap, a history, and a load ready to start."""
    cluster = cluster_factory()
    tap = BusTap(cluster)
    history = History()
    load = Load(history, cluster.http_ports, clients=4, max_ops=600, max_seconds=40)
    yield cluster, tap, history, load
    load.stop()
    tap.close()


def acked_after(history: History, count: int, timeout: float = 20) -> None:
    """Wait until ``count`` more trades are acknowledged than now."""
    target = len(history.by_status("ok")) + count
    wait_until(lambda: len(history.by_status("ok")) >= target, timeout, f"{count} more acknowledged trades")


def kill(cluster, history, replica: int) -> None:
    history.note(f"SIGKILL order-{replica}")
    cluster.replica(replica).kill()


def restart(cluster, history, replica: int) -> None:
    history.note(f"restart order-{replica}")
    cluster.replica(replica).start()


class TestLeaderKilled:
    """The leader dies mid-request while trades keep coming."""

    def test_acknowledged_trades_survive_and_a_new_leader_takes_over(self, trading):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 30)
        leader, epoch = tap.wait_leader()
        kill(cluster, history, leader)
        new, new_epoch = tap.wait_leader(other_than=leader, min_epoch=epoch + 1)
        assert new != leader and new_epoch > epoch
        acked_after(history, 30)
        load.stop()
        restart(cluster, history, leader)
        assert_promises_kept(cluster, history)

    def test_old_leader_restarted_follows(self, trading):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 20)
        leader, epoch = tap.wait_leader()
        kill(cluster, history, leader)
        new, _ = tap.wait_leader(other_than=leader, min_epoch=epoch + 1)
        acked_after(history, 20)
        since = time.monotonic()
        restart(cluster, history, leader)
        tap.wait_event(CaughtUpEvent, f"order-{leader}", since=since, timeout=15)
        acked_after(history, 20)
        assert tap.leader()[0] == new  # the old leader follows; it does not take over
        load.stop()
        assert_promises_kept(cluster, history)


class TestFollowerKilled:
    """A follower dies; the leader keeps committing with the other one."""

    def test_the_leader_keeps_committing_with_the_other_follower(self, trading):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 20)
        leader, _ = tap.wait_leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        kill(cluster, history, follower)
        acked_after(history, 30)
        assert tap.leader()[0] == leader
        load.stop()
        restart(cluster, history, follower)
        assert_promises_kept(cluster, history)

    def test_restarted_and_caught_up(self, trading):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 10)
        leader, _ = tap.wait_leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        kill(cluster, history, follower)
        acked_after(history, 60)  # the follower falls well behind
        since = time.monotonic()
        restart(cluster, history, follower)
        event = tap.wait_event(CaughtUpEvent, f"order-{follower}", since=since, timeout=15)
        assert event.index > 0
        acked_after(history, 20)
        load.stop()
        assert_promises_kept(cluster, history)


class TestTwoKills:
    """Two replicas die in a row: with one left there is no majority, so
    trades wait (and answer 503); when one comes back, trading resumes."""

    def test_trades_wait_without_a_majority_and_resume_with_one(self, trading):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 20)
        first, epoch = tap.wait_leader()
        kill(cluster, history, first)
        second, _ = tap.wait_leader(other_than=first, min_epoch=epoch + 1)
        acked_after(history, 20)
        kill(cluster, history, second)
        restart(cluster, history, first)
        acked_after(history, 30, timeout=30)
        load.stop()
        restart(cluster, history, second)
        assert_promises_kept(cluster, history)


class TestKillRestartKill:
    """The case every public implementation of the lab fails: kill the
    leader, restart it, then kill the new leader, under load. The restarted
    replica must not lead with a stale log and reuse transaction numbers."""

    @pytest.mark.parametrize("moment", ["after-catch-up", "right-after-restart", "before-catch-up"])
    def test_the_restarted_replica_never_leads_with_a_stale_log(self, trading, moment):
        cluster, tap, history, load = trading
        load.start()
        acked_after(history, 20)
        first, epoch = tap.wait_leader()
        kill(cluster, history, first)
        second, epoch2 = tap.wait_leader(other_than=first, min_epoch=epoch + 1)
        acked_after(history, 40)  # the dead replica misses these
        since = time.monotonic()
        if moment == "before-catch-up":
            # Hang the new leader first, so the restarted replica cannot catch
            # up: it comes back with a stale log and, being the highest id,
            # campaigns first. Only the third replica holds the whole history.
            history.note(f"SIGSTOP order-{second}")
            cluster.replica(second).pause()
        restart(cluster, history, first)
        if moment == "after-catch-up":
            tap.wait_event(CaughtUpEvent, f"order-{first}", since=since, timeout=15)
        elif moment == "before-catch-up":
            # The election happens while the leader hangs, then it dies for good.
            tap.wait_leader(other_than=second, min_epoch=epoch2 + 1, timeout=15)
        kill(cluster, history, second)
        tap.wait_leader(other_than=second, min_epoch=epoch2 + 1, timeout=15)
        acked_after(history, 40, timeout=30)
        load.stop()
        restart(cluster, history, second)
        assert_promises_kept(cluster, history)


def _place_directly(cluster, name: str, trade: PlaceTrade, timeout_ms: int = 2000):
    """One trade straight to replica ``name``, sent once and never retried."""
    ctx = zmq.Context()
    sock = cluster.secure(ctx.socket(zmq.REQ), name)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint(name))
    try:
        sock.send(codec.encode(trade))
        return codec.decode(sock.recv()) if sock.poll(timeout_ms) else None
    finally:
        sock.close(linger=0)
        ctx.term()


def _armed_cluster(cluster_factory, failpoint: str):
    """A cluster whose replicas all die at ``failpoint`` (on their first start
    only; restarts are unarmed): whichever leads first is the one that dies."""
    args = ["--failpoint", failpoint]
    cluster = cluster_factory(first_start_args={f"order-{i}": args for i in (1, 2, 3)})
    tap = BusTap(cluster)
    leader, epoch = tap.wait_leader()
    return cluster, tap, leader, epoch


def _assert_conserved(cluster, log) -> None:
    """The catalog's table is the fold of the log's trades over the genesis."""
    stocks = cluster.stocks()
    for name, initial in cluster.genesis().items():
        expect = initial + sum(q if s == "sell" else -q for _, _, n, q, s in log if n == name)
        assert stocks[name][1] == expect, name


class TestReplyLost:
    """A trade commits on a majority but its reply is lost (the leader dies
    right before answering); the retry with the same key finds the one trade."""

    def test_the_retry_finds_the_one_committed_trade(self, cluster_factory):
        cluster, tap, leader, epoch = _armed_cluster(cluster_factory, "before-trade-reply")
        try:
            first = _place_directly(cluster, f"order-{leader}",
                                    PlaceTrade("lost-reply-1", "GameStart", 3, "buy"), timeout_ms=1000)
            assert first is None
            wait_until(lambda: not cluster.replica(leader).alive, 10, "the failpoint to kill the leader")
            retry = cluster.api.post("/orders", {"name": "GameStart", "quantity": 3, "type": "buy"},
                                     headers={"Idempotency-Key": "lost-reply-1"})
            assert retry.status == 200
            survivor = next(i for i in (1, 2, 3) if i != leader)
            log = cluster.trades(survivor)
            assert [r[1] for r in log].count("lost-reply-1") == 1
            assert retry.data["transaction_number"] == next(r[0] for r in log if r[1] == "lost-reply-1")
            assert cluster.stocks()["GameStart"][1] == 97
            _assert_conserved(cluster, log)
        finally:
            tap.close()
