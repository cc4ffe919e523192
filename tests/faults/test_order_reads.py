"""Order reads that need no leader. A committed entry never changes, so any
replica that knows entry n committed answers ``GET /orders/<n>``; the
frontend asks the others when the leader does not answer. Here: every
replica's disk full at once (no leader can be elected: a vote must be
written), and a leader hung by SIGSTOP. Every acknowledged trade reads back
unchanged; none is ever answered "does not exist"."""

from __future__ import annotations

import pytest

from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import wait_until
from harness.history import History, Load

from .test_storage import acked_after, fill, small_disk, wait_storage

pytestmark = pytest.mark.slow


def acknowledged(history: History) -> list:
    return [op for op in history.by_status("ok") if op.txn is not None]


def read_back(cluster, ops) -> None:
    """Each acknowledged trade, read at once: 200 and the order it was."""
    for op in ops:
        reply = cluster.api.get(f"/orders/{op.txn}")
        assert reply.status == 200, (op.txn, reply.status, reply.error)
        assert (reply.data["name"], reply.data["quantity"], reply.data["type"]) == (op.name, op.quantity, op.side)


def test_with_every_replicas_disk_full_acknowledged_orders_still_read_back(cluster_factory, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        cluster = cluster_factory(data_dirs={f"order-{i}": disk / f"order-{i}" for i in (1, 2, 3)})
        tap, history = BusTap(cluster), History()
        load = Load(history, cluster.http_ports, clients=3, max_ops=100_000, max_seconds=120, pace_s=0.005)
        try:
            tap.wait_leader()
            load.start()
            acked_after(history, 30)
            filler = fill(disk)
            history.note("every replica's disk full")
            for i in (1, 2, 3):
                wait_storage(tap, f"order-{i}", "full")
            load.stop()
            ops = acknowledged(history)
            assert len(ops) >= 30
            # No leader can be elected, and none is needed to read what committed.
            assert cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}).status == 503
            read_back(cluster, ops)
            assert cluster.api.get("/stocks/FishCo").status == 200  # lookups as before
            filler.unlink()
            history.note("space again")
            for i in (1, 2, 3):
                wait_storage(tap, f"order-{i}", "ok")
            wait_until(lambda: cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "sell"}
                                                ).status == 200, 30, "trading to resume")
            assert_promises_kept(cluster, history)
        finally:
            load.stop()
            tap.close()
            cluster.close()


def test_with_the_leader_hung_acknowledged_orders_still_read_back(cluster_factory):
    cluster = cluster_factory()
    tap, history = BusTap(cluster), History()
    load = Load(history, cluster.http_ports, clients=2, max_ops=100_000, max_seconds=60, pace_s=0.005)
    try:
        leader, _ = tap.wait_leader()
        load.start()
        acked_after(history, 30)
        load.stop()
        ops = acknowledged(history)
        cluster.replica(leader).pause()  # SIGSTOP: it holds its sockets and answers nothing
        history.note(f"order-{leader} hung")
        read_back(cluster, ops[-5:])  # the newest first: what a follower may not yet know committed
        read_back(cluster, ops)
        cluster.replica(leader).resume()
        assert_promises_kept(cluster, history)
    finally:
        load.stop()
        tap.close()
        cluster.close()
