"""The frontend cache with real processes: fresh across frontends, never
older than what was seen, off the moment the bus is lost (promise 6)."""

from __future__ import annotations

import random
import threading

import pytest

from harness.bus import BusTap
from harness.cluster import Http, wait_until

pytestmark = pytest.mark.slow


def trade(http, name, quantity, side):
    reply = http.post("/orders", {"name": name, "quantity": quantity, "type": side})
    assert reply.status in (200, 403), reply.body
    return reply


def catalog_quantity(cluster, name):
    return cluster.stocks()[name][1]


def test_a_trade_through_one_frontend_shows_in_the_others_lookups(cluster_factory):
    cluster = cluster_factory(frontends=2)
    a, b = cluster.http(cluster.http_ports[0]), cluster.http(cluster.http_ports[1])
    before = b.get("/stocks/FishCo").data["quantity"]
    b.get("/stocks/FishCo")  # now cached on B
    assert b.get("/stats").data["cache"]["entries"]["FishCo"]["quantity"] == before
    trade(a, "FishCo", 6, "buy")
    wait_until(lambda: b.get("/stocks/FishCo").data["quantity"] == before - 6, 2,
               "frontend B to see frontend A's trade")
    assert b.get("/stats").data["cache"]["hits"] >= 1


def test_read_your_writes_through_the_same_frontend(cluster_factory):
    cluster = cluster_factory()
    api = cluster.api
    expected = api.get("/stocks/GameStart").data["quantity"]
    for k in range(40):
        api.get("/stocks/GameStart")  # cached
        side = "buy" if k % 2 else "sell"
        trade(api, "GameStart", 3, side)
        expected += 3 if side == "sell" else -3
        # Immediately, without waiting for the bus:
        assert api.get("/stocks/GameStart").data["quantity"] == expected


def test_losing_the_broker_turns_both_caches_off_until_it_returns(cluster_factory):
    cluster = cluster_factory(frontends=2)
    clients = [cluster.http(p) for p in cluster.http_ports]
    for http in clients:
        http.get("/stocks/BoarCo")
        http.get("/stocks/BoarCo")
        assert http.get("/stats").data["cache"]["streaming"] is True
    cluster.node("broker").kill()
    for http in clients:
        wait_until(lambda h=http: h.get("/stats").data["cache"]["streaming"] is False, 2,
                   "the frontend to stop trusting its cache")
        stats = http.get("/stats").data
        assert stats["cache"]["size"] == 0
        calls = stats["backend"]["catalog_calls"]
        assert http.get("/stocks/BoarCo").status == 200
        assert http.get("/stats").data["backend"]["catalog_calls"] == calls + 1  # straight to the catalog
    # While the bus is down, a trade's invalidation is lost for other frontends:
    trade(clients[0], "BoarCo", 2, "sell")
    # ... and the other frontend, caching nothing, shows it once the catalog has applied it (the catalog
    # follows the log a moment behind the acknowledgement, and another frontend was never shown it).
    settled = catalog_quantity(cluster, "BoarCo")
    wait_until(lambda: clients[1].get("/stocks/BoarCo").data["quantity"] == settled, 5,
               "the other frontend to show the trade")
    cluster.node("broker").start()
    for http in clients:
        wait_until(lambda h=http: h.get("/stats").data["cache"]["streaming"] is True, 5,
                   "the frontend to trust its cache again")
        http.get("/stocks/BoarCo")
        hits = http.get("/stats").data["cache"]["hits"]
        assert http.get("/stocks/BoarCo").data["quantity"] == catalog_quantity(cluster, "BoarCo")
        assert http.get("/stats").data["cache"]["hits"] == hits + 1


def test_a_restarted_catalog_leaves_no_stale_entry(cluster_factory):
    cluster = cluster_factory()
    api = cluster.api
    api.get("/stocks/OakFolk")
    api.get("/stocks/OakFolk")
    flushes = api.get("/stats").data["cache"]["flushes"]
    cluster.node("catalog").restart()
    wait_until(lambda: api.get("/stats").data["cache"]["flushes"] > flushes, 5, "a flush after the catalog restarted")
    wait_until(lambda: api.get("/stats").data["cache"]["streaming"], 5, "the cache to stream again")
    assert api.get("/stocks/OakFolk").data["quantity"] == catalog_quantity(cluster, "OakFolk")


def test_lookups_racing_trades_never_leave_an_older_version_cached(cluster_factory):
    # The failpoint holds every catalog reply 20 ms before it may be cached, so
    # that invalidations often overtake it; a cache of 2 for 3 stocks keeps
    # evicting, so lookups keep missing: the race happens, many times.
    cluster = cluster_factory(frontends=2, frontend_args=["--failpoint", "slow-lookup-install"],
                              settings={"frontend": {"cache_size": 2}})
    names = ("GameStart", "FishCo", "BoarCo")
    stop = threading.Event()
    errors: list[str] = []

    def looker(port: int, seed: int) -> None:
        rng = random.Random(seed)
        http = Http(port)
        try:
            for _ in range(3000):
                if stop.is_set():
                    return
                if http.get(f"/stocks/{rng.choice(names)}").status != 200:
                    errors.append("lookup failed")
        finally:
            http.close()

    def trader(port: int, seed: int) -> None:
        rng = random.Random(seed)
        http = Http(port)
        try:
            for _ in range(150):
                if stop.is_set():
                    return
                reply = http.post("/orders", {"name": rng.choice(names), "quantity": rng.randint(1, 3),
                                              "type": rng.choice(("buy", "sell"))})
                if reply.status not in (200, 403):
                    errors.append(f"trade: HTTP {reply.status}")
        finally:
            http.close()

    threads = [threading.Thread(target=looker, args=(p, k)) for k, p in enumerate(cluster.http_ports * 3)]
    threads += [threading.Thread(target=trader, args=(p, 100 + k)) for k, p in enumerate(cluster.http_ports * 2)]
    for t in threads:
        t.start()
    try:
        for t in threads[len(cluster.http_ports) * 3:]:
            t.join(timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:5]

    with BusTap(cluster) as tap:  # one more catalog heartbeat: every invalidation has been delivered
        wait_until(lambda: tap.last_heartbeat("catalog"), 2, "a catalog heartbeat")
        wait_until(lambda: all(cluster.stats(p)["heard"].get("catalog", 9) < 0.1 for p in cluster.http_ports), 2,
                   "fresh catalog heartbeats at both frontends")
    stocks = cluster.stocks()
    refused = [cluster.stats(p)["cache"]["stale_refused"] for p in cluster.http_ports]
    assert sum(refused) > 0, "no lookup reply raced an invalidation: the test proved nothing"
    for port in cluster.http_ports:
        # Empty is possible (every reply may have lost its race); stale is not.
        entries = cluster.stats(port)["cache"]["entries"]
        for name, entry in entries.items():
            price, quantity, volume, version = stocks[name]
            assert (entry["version"], entry["quantity"]) == (version, quantity), \
                f"frontend on {port} caches {name} v{entry['version']}, the catalog has v{version}"


def test_with_the_cache_off_every_lookup_reaches_the_catalog(cluster_factory):
    cluster = cluster_factory(frontend_args=["--no-cache"])
    with BusTap(cluster) as tap:
        def lookups() -> int | None:
            beat = tap.last_heartbeat("catalog")
            return None if beat is None else beat.catalog.lookups

        before = wait_until(lambda: lookups() is not None and (lookups(),), 2, "a catalog heartbeat")[0]
        for _ in range(25):
            assert cluster.api.get("/stocks/FishCo").status == 200
        wait_until(lambda: lookups() == before + 25, 2, "the catalog to count 25 more lookups")
    assert cluster.api.get("/stats").data["cache"] == {"enabled": False}
