"""Prometheus metrics of a real cluster under load and a leader kill.

The frontend's ``GET /metrics`` and the monitor's exporter
(``python -m broker.monitor --prometheus HOST:PORT``, a subprocess) are
scraped before, during and after a load of concurrent trades in which the
leader is killed with SIGKILL. The counters must move as the load did: the
frontend counts exactly the trades its clients saw acknowledged, and the
exporter's last transaction number is the length of the settled log; the
leader metrics of both move to the new leader.
"""

from __future__ import annotations

import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.sockets import free_tcp_ports
from harness.checker import assert_promises_kept
from harness.cluster import wait_until
from harness.history import History, Load
from harness.process import Process

pytestmark = pytest.mark.slow

NODES = ("broker", "catalog", "order-1", "order-2", "order-3", "frontend")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(host: str, port: int) -> Samples | None:
    """Every sample at ``http://host:port/metrics``, None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(samples: Samples | None, name: str, **labels: str) -> float | None:
    return None if samples is None else samples.get((name, tuple(sorted(labels.items()))))


def acked_after(history: History, count: int, timeout: float = 20) -> None:
    target = len(history.by_status("ok")) + count
    wait_until(lambda: len(history.by_status("ok")) >= target, timeout, f"{count} more acknowledged trades")


@pytest.fixture
def exporter(cluster_factory, tmp_path):
    """A cluster and the monitor's exporter on a free port: ``(cluster, process, scrape)``."""
    cluster = cluster_factory()
    (port,) = free_tcp_ports(1)
    process = Process("exporter", ["-m", "broker.monitor", "--config", str(cluster.config_path),
                                   "--prometheus", f"127.0.0.1:{port}"], tmp_path / "exporter.log")
    process.start()
    try:
        yield cluster, process, lambda: scrape("127.0.0.1", port)
    finally:
        process.kill()


def test_counters_move_as_the_load_did_and_the_leader_metrics_follow_a_kill(exporter):
    cluster, process, cluster_metrics = exporter

    def frontend_metrics() -> Samples:
        got = scrape(cluster.http_host(), cluster.http_ports[0])
        assert got is not None, "the frontend's /metrics did not answer"
        return got

    def all_up() -> Samples | None:
        got = cluster_metrics()
        if got and all(get(got, "bazaar_cluster_node_up", node=n) == 1 for n in NODES) \
                and get(got, "bazaar_cluster_leader_replica"):
            return got
        return None

    before = wait_until(all_up, 15, "the exporter to see every node and a leader", process=process)
    leader = int(get(before, "bazaar_cluster_leader_replica"))
    epoch = get(before, "bazaar_cluster_epoch")
    assert get(before, "bazaar_cluster_replica_role", node=f"order-{leader}", role="leader") == 1
    fe = frontend_metrics()
    assert get(fe, "bazaar_frontend_leader_replica") == leader
    assert get(fe, "bazaar_frontend_leader_epoch") == epoch
    assert get(fe, "bazaar_frontend_http_requests_total", route="/orders", method="POST", status="200") is None

    history = History()
    load = Load(history, cluster.http_addresses, clients=3, max_ops=5000, max_seconds=40, lookups=True)

    def busy() -> bool:
        got = cluster_metrics()
        return all((get(got, name, **labels) or 0) > 0 for name, labels in (
            ("bazaar_cluster_trades_per_second", {}),
            ("bazaar_cluster_node_trades_per_second", {"node": f"order-{leader}"}),
            ("bazaar_cluster_node_lookups_per_second", {"node": "frontend"}),
        ))

    try:
        load.start()
        acked_after(history, 40)
        wait_until(busy, 10, "the exporter to see trades and lookups per second")

        history.note(f"SIGKILL order-{leader}")
        cluster.replica(leader).kill()

        def new_leader() -> Samples | None:
            got = cluster_metrics()
            moved = get(got, "bazaar_cluster_leader_replica") not in (None, 0, leader)
            return got if moved and get(got, "bazaar_cluster_epoch") > epoch else None

        after = wait_until(new_leader, 10, "the exporter's leader to change")
        new = int(get(after, "bazaar_cluster_leader_replica"))
        wait_until(lambda: get(frontend_metrics(), "bazaar_frontend_leader_replica") == new, 10,
                   "the frontend's leader metric to change")
        wait_until(lambda: get(cluster_metrics(), "bazaar_cluster_node_up", node=f"order-{leader}") == 0, 10,
                   "the killed leader to be down")
        acked_after(history, 40)
    finally:
        load.stop()

    # The frontend counted exactly what its clients saw, status by status.
    fe = frontend_metrics()
    seen = Counter(x.status for x in history.requests if (x.method, x.path) == ("POST", "/orders"))
    answered = sum(n for status, n in seen.items() if status is not None)
    for status, n in seen.items():
        if status is not None:
            assert get(fe, "bazaar_frontend_http_requests_total", route="/orders", method="POST",
                       status=str(status)) == n, status
    assert seen[200] == len(history.by_status("ok")) > 80
    assert get(fe, "bazaar_frontend_http_request_duration_seconds_count", route="/orders") == answered
    assert get(fe, "bazaar_frontend_http_request_duration_seconds_bucket", route="/orders", le="+Inf") == answered
    assert get(fe, "bazaar_frontend_backend_calls_total", backend="order") >= seen[200]
    lookups = sum(1 for x in history.requests if x.method == "GET" and x.path.startswith("/stocks/"))
    hits, misses, bypassed = (get(fe, f"bazaar_frontend_cache_{k}_total") for k in ("hits", "misses", "bypassed"))
    assert hits + misses + bypassed == lookups

    # The heartbeat's copy of the same counters reaches the exporter.
    order_calls = get(fe, "bazaar_frontend_backend_calls_total", backend="order")
    wait_until(lambda: get(cluster_metrics(), "bazaar_cluster_frontend_backend_calls_total", node="frontend",
                           backend="order") == order_calls, 5, "the exporter to hear the frontend's order calls")

    # Trades counted = trades acknowledged: once every unknown outcome is
    # settled, the log holds exactly the acknowledged trades, and the
    # exporter's last transaction number is its length.
    history.note(f"restart order-{leader}")
    cluster.replica(leader).start()
    assert_promises_kept(cluster, history)
    logged = len(cluster.trades(new))
    assert logged == len(history.by_status("ok"))
    wait_until(lambda: get(cluster_metrics(), "bazaar_cluster_last_txn") == logged, 10,
               f"the exporter's last transaction number to be {logged}")
    final = cluster_metrics()
    assert get(final, "bazaar_cluster_replica_last_txn", node=f"order-{new}") == logged
    assert get(final, "bazaar_cluster_replica_trades_total", node=f"order-{new}") > 0
    assert process.stop() == 0
