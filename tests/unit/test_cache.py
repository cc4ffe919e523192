"""The frontend's lookup cache (frontend/cache.py), driven by hand with a fake
clock: the bus is a sequence of method calls, the time is passed in.

Versions and stream positions are order log indices: a stock's version is
the index of the entry that last changed it, a :class:`StockChanges` covers
the entries ``prev + 1`` to ``index``, and the catalog's heartbeat says the
index it has applied."""

from __future__ import annotations

import pytest

from common.protocol import CacheStatus, CatalogStatus, Heartbeat, NodeKind, StockChanged, StockChanges, StockInfo
from frontend.cache import BROKER, CATALOG, Cached, LookupCache

WINDOW = 0.3


def info(name: str = "GameStart", version: int = 1, index: int = 0, quantity: int = 100) -> StockInfo:
    """A lookup reply: the stock at ``version``, read as of log index ``index``."""
    return StockInfo(name=name, price=15.99, quantity=quantity, volume=0, version=version, index=index)


def change(name: str, version: int, quantity: int = 99) -> StockChanged:
    return StockChanged(name=name, price=15.99, quantity=quantity, version=version)


def changes(prev: int, index: int, *changed: StockChanged) -> StockChanges:
    """The catalog applied entries ``prev + 1`` to ``index``, which left ``changed``."""
    return StockChanges(prev=prev, index=index, changes=list(changed))


def heartbeat(node: str, incarnation: str, applied: int | None = None) -> Heartbeat:
    """A heartbeat of the broker, or of the catalog at log index ``applied`` (None: without its status)."""
    if node == BROKER:
        return Heartbeat(node, incarnation, 1, 100, NodeKind.BROKER)
    status = None if applied is None else CatalogStatus(applied=applied, commit=applied, lookups=0, trades=0,
                                                        bad_requests=0)
    return Heartbeat(node, incarnation, 1, 100, NodeKind.CATALOG, catalog=status)


def beat(cache: LookupCache, now: float, applied: int, catalog: str = "cat-1", broker: str = "brk-1") -> None:
    """One heartbeat from the broker and one from the catalog (at log index ``applied``)."""
    cache.on_heartbeat(heartbeat(BROKER, broker), now)
    cache.on_heartbeat(heartbeat(CATALOG, catalog, applied), now)


@pytest.fixture
def cache() -> LookupCache:
    """A streaming cache of three entries; the catalog has applied the log up to entry 10."""
    c = LookupCache(capacity=3, window_s=WINDOW)
    beat(c, 0.0, applied=10)
    assert c.streaming
    return c


# --- starting up ------------------------------------------------------------------


def test_nothing_is_cached_before_the_bus_is_heard():
    c = LookupCache(3, WINDOW)
    assert not c.streaming
    assert not c.install(info(index=5))
    assert c.get("GameStart") is None
    assert c.stats.bypassed == 1 and c.stats.misses == 0


def test_the_catalog_alone_is_not_enough_nor_the_broker_alone():
    c = LookupCache(3, WINDOW)
    c.on_heartbeat(heartbeat(CATALOG, "cat-1", 4), 0.0)
    assert not c.streaming
    c2 = LookupCache(3, WINDOW)
    c2.on_heartbeat(heartbeat(BROKER, "brk-1"), 0.0)
    assert not c2.streaming
    c.on_heartbeat(heartbeat(BROKER, "brk-1"), 0.01)
    assert c.streaming and c.stream_seq == 4 and c.since_seq == 4


def test_heartbeats_of_other_nodes_are_ignored():
    c = LookupCache(3, WINDOW)
    c.on_heartbeat(Heartbeat("order-1", "o", 1, 100, NodeKind.REPLICA), 0.0)
    c.on_heartbeat(Heartbeat("frontend", "f", 1, 100, NodeKind.FRONTEND), 0.0)
    c.on_heartbeat(heartbeat("catalog-2", "c", 99), 0.0)  # a catalog's status, not the catalog
    assert c.stream_seq is None and not c.streaming
    assert c.liveness.nodes() == []


def test_a_catalog_heartbeat_without_its_status_sets_no_baseline():
    # (One whose applied index is not an integer never gets here: the codec refuses it.)
    c = LookupCache(3, WINDOW)
    c.on_heartbeat(heartbeat(BROKER, "b"), 0.0)
    c.on_heartbeat(heartbeat(CATALOG, "c"), 0.0)
    assert c.stream_seq is None and not c.streaming


# --- LRU -----------------------------------------------------------------------------


def test_install_then_hit(cache):
    assert cache.get("GameStart") is None
    assert cache.install(info("GameStart", version=2, index=10))
    assert cache.get("GameStart") == Cached("GameStart", 15.99, 100, 2)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.installs) == (1, 1, 1)


def test_lru_eviction_at_capacity(cache):
    for name in ("A", "B", "C"):
        assert cache.install(info(name, index=10))
    assert cache.get("A") is not None  # A is now the most recently used
    assert cache.install(info("D", index=10))
    assert list(cache.entries) == ["C", "A", "D"]  # B, the least recently used, went
    assert cache.get("B") is None
    assert cache.stats.evictions == 1
    cache.install(info("E", index=10))
    assert set(cache.entries) == {"A", "D", "E"}
    assert len(cache.entries) == cache.capacity


def test_a_reinstall_refreshes_recency(cache):
    for name in ("A", "B", "C"):
        cache.install(info(name, version=1, index=10))
    cache.install(info("A", version=2, index=10))  # newer version of A: A becomes most recent
    cache.install(info("D", index=10))
    assert "B" not in cache.entries and "A" in cache.entries


# --- versions only rise ------------------------------------------------------------------


def test_never_replaced_by_an_older_or_equal_version(cache):
    assert cache.install(info(version=5, index=10, quantity=50))
    assert not cache.install(info(version=4, index=10, quantity=60))
    assert not cache.install(info(version=5, index=10, quantity=70))
    assert cache.get("GameStart").quantity == 50
    assert cache.install(info(version=6, index=10, quantity=40))
    assert cache.get("GameStart").version == 6


def test_an_invalidation_replaces_a_cached_entry_by_the_newer_version(cache):
    cache.install(info(version=1, index=10))
    cache.on_changes(changes(10, 11, change("GameStart", version=11, quantity=97)))
    assert cache.get("GameStart") == Cached("GameStart", 15.99, 97, 11)
    assert cache.stream_seq == 11
    assert cache.stats.invalidations == 1


def test_an_invalidation_does_not_insert_what_was_not_cached(cache):
    cache.on_changes(changes(10, 11, change("FishCo", version=11)))
    assert "FishCo" not in cache.entries


def test_an_old_invalidation_does_not_downgrade_an_entry(cache):
    # A catalog that lost its last writes publishes entries 3-4 again.
    cache.install(info(version=5, index=10))
    cache.on_changes(changes(3, 4, change("GameStart", version=4)))
    assert cache.get("GameStart").version == 5
    assert cache.stream_seq == 10 and cache.stats.flushes == 0


def test_a_late_lookup_reply_older_than_an_invalidation_is_not_installed(cache):
    # The lookup read version 1; before its reply is installed, entry 11 changes the stock.
    late = info(version=1, index=10)
    cache.on_changes(changes(10, 11, change("GameStart", version=11)))
    assert not cache.install(late)
    assert cache.get("GameStart") is None
    assert cache.stats.stale_refused == 1
    assert cache.install(info(version=11, index=11))  # a reply as new as the floor is fine


def test_an_evicted_entry_does_not_come_back_older(cache):
    # An installed version is a floor too, so a late reply cannot undo what was served.
    slow = info("GameStart", version=4, index=10)   # read first, its reply delayed
    assert cache.install(info("GameStart", version=11, index=11))  # read after entry 11, installed first
    assert cache.get("GameStart").version == 11
    for name in ("A", "B", "C"):                  # evicts GameStart
        cache.install(info(name, index=11))
    assert "GameStart" not in cache.entries
    cache.install(slow)                           # must not serve version 4 after version 11
    hit = cache.get("GameStart")
    assert hit is None or hit.version >= 11


# --- read your writes --------------------------------------------------------------------------


def test_a_trade_reply_refreshes_the_entry_at_once(cache):
    cache.install(info(version=1, index=10, quantity=100))
    cache.on_trade(info(version=11, index=11, quantity=97), "GameStart")
    assert cache.get("GameStart") == Cached("GameStart", 15.99, 97, 11)


def test_after_a_trade_a_pre_trade_lookup_reply_is_refused(cache):
    pre_trade = info(version=1, index=10, quantity=100)
    cache.on_trade(info(version=11, index=11, quantity=97), "GameStart")
    assert "GameStart" not in cache.entries  # on_trade refreshes, never inserts
    assert not cache.install(pre_trade)
    assert cache.get("GameStart") is None
    assert cache.install(info(version=11, index=11, quantity=97))


def test_a_replayed_trade_without_the_stock_drops_the_entry(cache):
    cache.install(info(version=1, index=10))
    cache.on_trade(None, "GameStart")
    assert cache.get("GameStart") is None
    assert cache.stats.invalidations == 1
    cache.on_trade(None, "NotCached")  # nothing to drop, no error
    assert cache.stats.invalidations == 1


def test_the_bus_catching_up_after_a_trade_changes_nothing(cache):
    cache.install(info(version=1, index=10))
    cache.on_trade(info(version=11, index=11, quantity=97), "GameStart")
    cache.on_changes(changes(10, 11, change("GameStart", version=11, quantity=97)))
    assert cache.get("GameStart").version == 11
    assert cache.streaming and cache.stream_seq == 11


# --- a continuous stream, or nothing -------------------------------------------------------------


def test_runs_of_entries_that_chain_keep_the_stream(cache):
    cache.install(info("A", version=1, index=10))
    cache.on_changes(changes(10, 14, change("A", version=12), change("B", version=14)))  # one page, 4 entries
    cache.on_changes(changes(14, 15))  # a run that changed no stock (a no-op, a refusal)
    cache.on_changes(changes(15, 16, change("A", version=16)))
    assert cache.stats.flushes == 0 and cache.stream_seq == 16
    assert cache.get("A").version == 16


def test_a_run_that_does_not_start_where_the_stream_is_flushes(cache):
    cache.install(info("A", index=10))
    cache.install(info("B", index=10))
    cache.on_changes(changes(10, 11, change("A", version=11)))
    cache.on_changes(changes(12, 13, change("B", version=13)))  # entry 12's run was lost
    assert cache.entries == {}
    assert cache.stats.flushes == 1
    assert cache.last_flush_reason.startswith("gap")
    assert cache.stats.flush_reasons == {"gap": 1}
    # The stream restarts at 13: a reply read before it may predate entry 12.
    assert (cache.stream_seq, cache.since_seq) == (13, 13)
    assert not cache.install(info("C", index=12))
    assert cache.install(info("C", index=13))


def test_a_repeated_or_old_run_is_no_gap(cache):
    cache.install(info("A", version=1, index=10))
    cache.on_changes(changes(10, 11, change("A", version=11)))
    cache.on_changes(changes(10, 11, change("A", version=11)))  # duplicate
    cache.on_changes(changes(9, 10, change("A", version=10)))   # old
    assert cache.stats.flushes == 0
    assert cache.stream_seq == 11
    assert cache.get("A").version == 11


def test_a_catalog_heartbeat_ahead_of_the_stream_flushes(cache):
    cache.install(info("A", index=10))
    beat(cache, 0.1, applied=12)  # the catalog has applied up to 12 but we heard only up to 10
    assert cache.entries == {}
    assert cache.stats.flushes == 1 and cache.last_flush_reason.startswith("missed changes")
    assert cache.since_seq == 12
    assert not cache.install(info("A", index=11))
    assert cache.install(info("A", index=12))


def test_a_catalog_heartbeat_level_with_the_stream_keeps_the_cache(cache):
    cache.install(info("A", index=10))
    cache.on_changes(changes(10, 11, change("X", version=11)))
    beat(cache, 0.1, applied=11)
    assert "A" in cache.entries and cache.stats.flushes == 0


def test_a_catalog_heartbeat_behind_the_stream_flushes(cache):
    cache.install(info("A", index=10))
    cache.on_changes(changes(10, 11, change("X", version=11)))
    beat(cache, 0.1, applied=9)
    assert cache.entries == {} and cache.last_flush_reason.startswith("catalog went back")
    assert cache.stream_seq == 9


def test_a_catalog_restart_flushes(cache):
    cache.install(info("A", index=10))
    beat(cache, 0.1, applied=10, catalog="cat-2")  # same index, new incarnation
    assert cache.entries == {}
    assert cache.last_flush_reason == "catalog restarted"
    assert cache.catalog_incarnation == "cat-2"
    assert cache.streaming  # the new catalog's heartbeat is the new baseline
    assert cache.install(info("A", index=10))
    beat(cache, 0.2, applied=10, catalog="cat-2")
    assert "A" in cache.entries  # the same incarnation again is no restart


def test_a_broker_restart_alone_does_not_flush(cache):
    cache.install(info("A", index=10))
    beat(cache, 0.1, applied=10, broker="brk-2")
    assert "A" in cache.entries


@pytest.mark.parametrize("silent", [BROKER, CATALOG])
def test_silence_for_the_window_flushes_and_stops_caching(cache, silent):
    cache.install(info("A", index=10))
    other = CATALOG if silent == BROKER else BROKER
    other_beat = heartbeat(CATALOG, "cat-1", 10) if other == CATALOG else heartbeat(BROKER, "brk-1")
    for t in (0.1, 0.2, 0.3):  # only the other node keeps beating
        cache.on_heartbeat(other_beat, t)
        cache.tick(t)
    assert "A" in cache.entries  # 0.3 s of silence is not yet more than the window
    cache.tick(0.31)
    assert cache.entries == {}
    assert not cache.streaming
    assert cache.last_flush_reason == f"{silent} silent"
    assert cache.stream_seq is None and cache.since_seq is None
    assert not cache.install(info("A", index=10))
    assert cache.get("A") is None and cache.stats.bypassed == 1


def test_caching_resumes_when_both_heartbeats_return(cache):
    cache.tick(1.0)
    assert not cache.streaming
    cache.on_heartbeat(heartbeat(BROKER, "brk-1"), 1.1)
    assert not cache.streaming  # no catalog baseline yet
    cache.on_heartbeat(heartbeat(CATALOG, "cat-1", 15), 1.1)
    assert cache.streaming and cache.since_seq == 15
    assert not cache.install(info("A", index=14))  # read before the stream restarted
    assert cache.install(info("A", index=15))


def test_changes_heard_while_blind_do_not_count_as_a_stream(cache):
    cache.tick(1.0)
    cache.on_changes(changes(19, 20, change("A", version=20)))
    assert cache.stream_seq is None and not cache.streaming
    cache.on_heartbeat(heartbeat(BROKER, "brk-1"), 1.1)
    cache.on_heartbeat(heartbeat(CATALOG, "cat-1", 20), 1.1)
    assert not cache.install(info("A", version=15, index=20))  # the floor from entry 20 still holds
    assert cache.install(info("A", version=20, index=20))


def test_a_closed_bus_connection_flushes_at_once(cache):
    cache.install(info("A", index=10))
    cache.bus_disconnected()
    assert cache.entries == {} and not cache.streaming
    assert cache.last_flush_reason == "broker disconnected"
    cache.on_heartbeat(heartbeat(CATALOG, "cat-1", 10), 0.05)  # queued catalog beat: still no broker
    assert not cache.streaming
    cache.on_heartbeat(heartbeat(BROKER, "brk-1"), 0.06)
    assert cache.streaming


def test_a_reply_read_before_the_stream_restarted_is_not_installed(cache):
    reply = info("A", version=1, index=10)  # read as of entry 10
    beat(cache, 0.1, applied=12)           # we learn we missed entries 11 and 12
    assert not cache.install(reply)
    assert cache.get("A") is None


def test_a_flush_with_nothing_to_lose_is_not_counted():
    c = LookupCache(3, WINDOW)
    c.tick(10.0)
    c.bus_disconnected()
    assert c.stats.flushes == 0


# --- the operator's invalidate, and the figures -----------------------------------------------------


def test_invalidate(cache):
    cache.install(info("A", index=10))
    assert cache.invalidate("A")
    assert not cache.invalidate("A")
    assert not cache.invalidate("Nope")
    assert cache.get("A") is None
    assert cache.stats.invalidations == 1


def test_snapshot_figures(cache):
    cache.install(info("A", index=10))
    cache.get("A")
    cache.get("A")
    cache.get("B")
    snap = cache.snapshot()
    assert snap == CacheStatus(
        size=1, capacity=3, streaming=True, hits=2, misses=1, bypassed=0, installs=1,
        stale_refused=0, invalidations=0, evictions=0, flushes=0, hit_rate=0.6667,
        stream_seq=10,
    )
    assert LookupCache(3, WINDOW).snapshot().hit_rate == 0.0


def test_a_stream_that_lags_the_leaders_commit_for_a_window_flushes():
    """A catalog cut off from the replicas (or whose disk is full) still beats
    but applies nothing: the leader's commit index tells the cache so."""
    from common.protocol import CatalogStatus, Heartbeat, NodeKind, StockChanges, StockInfo

    cache = LookupCache(10, 0.3)

    def beats(now: float, applied: int) -> None:
        cache.on_heartbeat(Heartbeat("broker", "b", 1, 100, NodeKind.BROKER), now)
        cache.on_heartbeat(Heartbeat("catalog", "c", 1, 100, NodeKind.CATALOG, catalog=CatalogStatus(
            applied=applied, commit=applied, lookups=0, trades=0, bad_requests=0)), now)
        cache.tick(now)

    beats(0.0, 10)
    assert cache.install(StockInfo("A", 1.0, 5, 0, 3, 10))
    cache.on_leader_commit(12, 0.05)
    cache.on_changes(StockChanges(prev=10, index=12, changes=[]))
    beats(0.2, 12)
    beats(0.4, 12)
    assert cache.get("A") is not None  # the stream reached 12 in time
    cache.on_leader_commit(20, 0.45)
    beats(0.6, 12)
    assert cache.entries  # not yet a whole window behind
    beats(0.8, 12)
    assert not cache.entries and cache.last_flush_reason.startswith("catalog lags the log")
