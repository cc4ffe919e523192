"""Cut links and hung nodes: every process stays alive, the network fails.

Links are TCP proxies between each pair of nodes (harness/links.py).
``blackhole`` holds traffic with the connections open (only missed heartbeats
tell); ``reset`` closes them (the peers see it at once). Each scenario runs
trades under load and ends with the history checker.
"""

from __future__ import annotations

import time

import pytest

from common.protocol import LeaderChangedEvent, SteppedDownEvent
from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import wait_until
from harness.history import History, Load

pytestmark = pytest.mark.slow

FAST = {"timeouts": {"request_ms": 500, "lookup_attempts": 2, "trade_deadline_ms": 2000}}


@pytest.fixture
def linked(cluster_factory):
    cluster = cluster_factory(links=True, frontends=2, settings=FAST)
    tap = BusTap(cluster)
    history = History()
    load = Load(history, cluster.http_ports, clients=4, max_ops=2000, max_seconds=40)
    yield cluster, tap, history, load
    load.stop()
    tap.close()


def acked_after(history: History, count: int, timeout: float = 20, ports_filter=None) -> None:
    target = len(history.by_status("ok")) + count
    wait_until(lambda: len(history.by_status("ok")) >= target, timeout, f"{count} more acknowledged trades")


def cut(cluster, history, a: str, b: str, how: str) -> None:
    history.note(f"{how} {a} <-> {b}")
    for link in cluster.links_between(a, b):
        getattr(link, how)()


def restore_all(cluster, history) -> None:
    history.note("restore every link")
    for link in cluster.hub.links.values():
        link.restore()


@pytest.mark.parametrize("how", ["blackhole", "reset"])
class TestLeaderCutFromFollowers:
    """The leader loses both followers but keeps running and keeps its
    frontend connections. It must not commit alone; the followers elect a new
    leader; the old one steps down and, once the links return, follows."""

    def test_a_new_leader_is_elected_and_the_cut_one_steps_down_without_losing_a_trade(self, linked, how):
        cluster, tap, history, load = linked
        load.start()
        acked_after(history, 20)
        leader, epoch = tap.wait_leader()
        since = time.monotonic()
        for other in (1, 2, 3):
            if other != leader:
                cut(cluster, history, f"order-{leader}", f"order-{other}", how)
        new, _ = tap.wait_leader(other_than=leader, min_epoch=epoch + 1, timeout=5)
        tap.wait_event(SteppedDownEvent, f"order-{leader}", since=since, timeout=5)
        acked_after(history, 30)
        restore_all(cluster, history)
        since = time.monotonic()
        acked_after(history, 20)
        load.stop()
        assert_promises_kept(cluster, history)
        assert tap.leader()[0] == new


@pytest.mark.parametrize("how", ["blackhole", "reset"])
class TestFrontendCutFromLeader:
    """One frontend cannot reach the leader; the other can. The cut-off
    frontend answers 503 within its deadline (its trades' outcome unknown
    until retried), the other keeps trading, and everything settles."""

    def test_the_cut_frontend_answers_503_in_time_and_its_retry_trades_once(self, linked, how):
        cluster, tap, history, load = linked
        load.start()
        acked_after(history, 20)
        leader, _ = tap.wait_leader()
        cut(cluster, history, "frontend", f"order-{leader}", how)
        start = time.monotonic()
        reply = cluster.http(cluster.http_ports[0]).post(
            "/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}, headers={"Idempotency-Key": "cut-off-1"})
        assert reply.status == 503
        assert time.monotonic() - start < 2.0 + 2.0  # the deadline, plus slack for a busy machine
        other = cluster.http(cluster.http_ports[1]).post("/orders", {"name": "FishCo", "quantity": 1, "type": "buy"})
        assert other.status == 200
        restore_all(cluster, history)
        acked_after(history, 20)
        load.stop()
        retried = cluster.http(cluster.http_ports[0]).post(
            "/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}, headers={"Idempotency-Key": "cut-off-1"})
        assert retried.status == 200
        assert_promises_kept(cluster, history)


@pytest.mark.parametrize("how", ["blackhole", "reset"])
class TestCatalogCutFromBus:
    """The catalog's changes stop reaching the bus. The frontends must stop
    trusting their caches (no catalog heartbeat for a liveness window) rather
    than serve what may be stale, and resume once the catalog is heard again."""

    def test_caches_go_blind_rather_than_serve_stale_and_come_back(self, linked, how):
        cluster, tap, history, load = linked
        a, b = (cluster.http(p) for p in cluster.http_ports)
        for http in (a, b):
            http.get("/stocks/MenhirCo")
            http.get("/stocks/MenhirCo")
        cut(cluster, history, "catalog", "broker", how)
        for http in (a, b):
            wait_until(lambda h=http: not h.get("/stats").data["cache"]["streaming"], 2, "the caches to go off")
        assert a.post("/orders", {"name": "MenhirCo", "quantity": 3, "type": "sell"}).status == 200
        fresh = cluster.stocks()["MenhirCo"][1]
        assert b.get("/stocks/MenhirCo").data["quantity"] == fresh  # no invalidation came, yet no stale read
        restore_all(cluster, history)
        for http in (a, b):
            wait_until(lambda h=http: h.get("/stats").data["cache"]["streaming"], 5, "the caches to come back")
            assert http.get("/stocks/MenhirCo").data["quantity"] == fresh


class TestLeaderHung:
    """The leader is stopped (SIGSTOP): its connections stay open and say
    nothing. Missed heartbeats elect a new leader; when the old one resumes it
    finds itself deposed, refused by the catalog's fence and by the replicas,
    and follows."""

    def test_missed_heartbeats_elect_a_new_leader_and_the_resumed_one_follows(self, linked):
        cluster, tap, history, load = linked
        load.start()
        acked_after(history, 20)
        leader, epoch = tap.wait_leader()
        history.note(f"SIGSTOP order-{leader}")
        cluster.replica(leader).pause()
        tap.wait_leader(other_than=leader, min_epoch=epoch + 1, timeout=5)
        acked_after(history, 30)
        since = time.monotonic()
        history.note(f"SIGCONT order-{leader}")
        cluster.replica(leader).resume()
        tap.wait_event(LeaderChangedEvent, f"order-{leader}", since=since, timeout=5)
        acked_after(history, 20)
        load.stop()
        assert_promises_kept(cluster, history)
