"""The frontend's ``GET /metrics`` (frontend.metrics): request counts and
latency buckets, and the families read from the frontend's status at scrape
time, checked by parsing the text Prometheus would read."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.protocol import BackendStatus, CacheStatus, FrontendStatus, LeaderBelief
from frontend.metrics import LATENCY_BUCKETS_S, UNMATCHED, RequestStats, registry, render

CACHE = CacheStatus(size=4, capacity=10, streaming=True, hits=30, misses=7, bypassed=2, installs=7,
                    stale_refused=1, invalidations=5, evictions=0, flushes=1, hit_rate=0.81, stream_seq=12)
BACKEND = BackendStatus(catalog_calls=9, order_calls=21, retries=3, unavailable=1, timeouts=2)


def status(cache: CacheStatus | None = CACHE, leader: int | None = 3, epoch: int = 2) -> FrontendStatus:
    return FrontendStatus(node="frontend", leader=LeaderBelief(epoch=epoch, leader=leader), backend=BACKEND,
                          heard={"broker": 0.05, "order-3": 0.02}, cache=cache)


def scrape(requests: RequestStats, current: FrontendStatus) -> dict[str, dict[tuple, float]]:
    """Every sample: family name -> {(sample name, sorted labels): value}."""
    body, content_type = render(registry(requests, lambda: current), None)
    assert content_type.startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(family.name, {})[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestRequestStats:
    def test_counts_by_route_method_and_status(self):
        stats = RequestStats()
        stats.observe("/orders", "POST", 200, 0.004)
        stats.observe("/orders", "POST", 200, 0.006)
        stats.observe("/orders", "POST", 503, 4.0)
        stats.observe(UNMATCHED, "BREW", 405, 0.0001)
        assert stats.count("/orders", "POST", 200) == 2
        assert stats.count("/orders", "POST", 503) == 1
        assert stats.count(UNMATCHED, "other", 405) == 1  # any method a client invents is "other"

    @pytest.mark.parametrize("seconds,first_bucket", [
        (0.0, 0), (LATENCY_BUCKETS_S[0], 0), (0.00051, 1), (0.003, 3), (5.0, 12), (60.0, 13),
    ])
    def test_a_bucket_counts_what_is_at_most_its_bound(self, seconds, first_bucket):
        stats = RequestStats()
        stats.observe("/x", "GET", 200, seconds)
        buckets, total = stats.buckets("/x")
        assert [n for _, n in buckets] == [0] * first_bucket + [1] * (len(buckets) - first_bucket)
        assert buckets[-1][0] == "+Inf" and total == seconds

    def test_buckets_are_cumulative(self):
        stats = RequestStats()
        for seconds in (0.0001, 0.0002, 0.02, 0.3):
            stats.observe("/x", "GET", 200, seconds)
        buckets = dict(stats.buckets("/x")[0])
        assert (buckets["0.0005"], buckets["0.025"], buckets["0.5"], buckets["+Inf"]) == (2, 3, 4, 4)


class TestScrape:
    def test_requests_and_latency(self):
        stats = RequestStats()
        stats.observe("/stocks/<path:name>", "GET", 200, 0.0003)
        stats.observe("/stocks/<path:name>", "GET", 404, 0.0004)
        stats.observe("/orders", "POST", 200, 0.003)
        got = scrape(stats, status())
        requests = got["bazaar_frontend_http_requests"]
        key = ("bazaar_frontend_http_requests_total", (("method", "POST"), ("route", "/orders"), ("status", "200")))
        assert requests[key] == 1
        assert sum(requests.values()) == 3
        latency = got["bazaar_frontend_http_request_duration_seconds"]
        lookups = (("route", "/stocks/<path:name>"),)
        assert latency[("bazaar_frontend_http_request_duration_seconds_count", lookups)] == 2
        assert latency[("bazaar_frontend_http_request_duration_seconds_sum", lookups)] == pytest.approx(0.0007)
        assert latency[("bazaar_frontend_http_request_duration_seconds_bucket",
                        (("le", "0.0005"), ("route", "/stocks/<path:name>")))] == 2

    def test_cache_backend_and_leader_come_from_the_status(self):
        got = scrape(RequestStats(), status())

        def value(family: str, sample: str | None = None, **labels: str) -> float:
            return got[family][(sample or family, tuple(sorted(labels.items())))]

        assert value("bazaar_frontend_cache_hits", "bazaar_frontend_cache_hits_total") == 30
        assert value("bazaar_frontend_cache_misses", "bazaar_frontend_cache_misses_total") == 7
        assert value("bazaar_frontend_cache_flushes", "bazaar_frontend_cache_flushes_total") == 1
        assert value("bazaar_frontend_cache_entries") == 4
        assert value("bazaar_frontend_cache_streaming") == 1
        assert value("bazaar_frontend_backend_calls", "bazaar_frontend_backend_calls_total", backend="order") == 21
        assert value("bazaar_frontend_backend_calls", "bazaar_frontend_backend_calls_total", backend="catalog") == 9
        assert value("bazaar_frontend_backend_retries", "bazaar_frontend_backend_retries_total") == 3
        assert value("bazaar_frontend_backend_timeouts", "bazaar_frontend_backend_timeouts_total") == 2
        assert value("bazaar_frontend_backend_unavailable", "bazaar_frontend_backend_unavailable_total") == 1
        assert value("bazaar_frontend_leader_replica") == 3
        assert value("bazaar_frontend_leader_epoch") == 2
        assert value("bazaar_frontend_heard_age_seconds", node="broker") == 0.05
        assert value("bazaar_frontend_info", node="frontend") == 1

    def test_no_leader_reads_zero_and_no_cache_only_says_so(self):
        got = scrape(RequestStats(), status(cache=None, leader=None, epoch=5))
        assert got["bazaar_frontend_leader_replica"][("bazaar_frontend_leader_replica", ())] == 0
        assert got["bazaar_frontend_leader_epoch"][("bazaar_frontend_leader_epoch", ())] == 5
        assert got["bazaar_frontend_cache_enabled"][("bazaar_frontend_cache_enabled", ())] == 0
        cache = [name for name in got if name.startswith("bazaar_frontend_cache_")]
        assert cache == ["bazaar_frontend_cache_enabled"]

    def test_openmetrics_when_asked(self):
        body, content_type = render(registry(RequestStats(), status), "application/openmetrics-text; version=1.0.0")
        assert content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")
