"""The frontend's Prometheus metrics, served as ``GET /metrics``.

The frontend is CPU-bound, so a request pays for as little as possible:
:meth:`RequestStats.observe` adds one to a plain dict entry and one to a
latency bucket found by bisection (no lock: the gevent worker runs every
request handler on one OS thread). Everything else is read when Prometheus
scrapes, by :class:`FrontendCollector`, from the figures the frontend keeps
anyway for its heartbeat and ``GET /stats`` (:class:`common.protocol.FrontendStatus`):
the cache's counters, the backend calls, the leader it follows, what it
hears on the bus. One process, so no multiprocess mode.

Every family is named ``bazaar_frontend_*``; ``docs/MONITOR.md`` ("Prometheus")
lists them with their meaning. The monitor's exporter
(:mod:`broker.monitor.exporter`) names its families ``bazaar_cluster_*``,
so a query never adds the two up by mistake.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric,
)

from common.protocol import FrontendStatus

# Upper bounds of the latency buckets, in seconds: a cached lookup takes a few
# hundred microseconds on the development machine, a trade a few milliseconds,
# and a trade across a failover up to the trade deadline (4 s by default).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The label of a request that matched no route (404, 405): the path itself
# would let any client create series at will.
UNMATCHED = "unmatched"
# Methods counted by name; any other (a client may send anything) is "other".
METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})


class RequestStats:
    """HTTP requests counted by route, method and status, and a latency
    histogram per route. Pure: the caller measures the time.

    :param bounds: the histogram's bucket upper bounds, rising, in seconds.
    """

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts: dict[tuple[str, str, int], int] = {}
        # route -> [count per bucket (the last one is +Inf)..., sum of seconds]
        self.latency: dict[str, list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request answered.

        :param route: the URL rule it matched (``/stocks/<path:name>``), or
            :data:`UNMATCHED`.
        """
        if method not in METHODS:
            method = "other"
        key = (route, method, status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        row = self.latency.get(route)
        if row is None:
            row = self.latency[route] = [0] * (len(self.bounds) + 2)
        row[bisect_left(self.bounds, seconds)] += 1
        row[-1] += seconds

    def count(self, route: str, method: str, status: int) -> int:
        return self.counts.get((route, method, status), 0)

    def buckets(self, route: str) -> tuple[list[tuple[str, int]], float]:
        """The route's cumulative buckets (``le`` as Prometheus writes it) and sum."""
        row = self.latency.get(route)
        if row is None:
            return [], 0.0
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), row[:-1]):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out, row[-1]


class FrontendCollector:
    """Reads the frontend's figures when Prometheus scrapes.

    :param requests: the HTTP request counts.
    :param status: returns the frontend's :class:`FrontendStatus` (as its heartbeat carries it).
    """

    def __init__(self, requests: RequestStats, status: Callable[[], FrontendStatus]) -> None:
        self.requests = requests
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield from self._http()
        status = self.status()
        info = GaugeMetricFamily("bazaar_frontend_info", "The frontend's node name on the bus (always 1).",
                                 labels=["node"])
        info.add_metric([status.node], 1)
        yield info
        yield from self._cache(status)
        yield from self._backend(status)
        yield GaugeMetricFamily("bazaar_frontend_leader_replica",
                                "The order replica this frontend sends trades to (0: none known).",
                                value=status.leader.leader or 0)
        yield GaugeMetricFamily("bazaar_frontend_leader_epoch",
                                "The epoch (Raft term) of the leader this frontend follows.",
                                value=status.leader.epoch)
        heard = GaugeMetricFamily("bazaar_frontend_heard_age_seconds",
                                  "Seconds since this frontend last heard each node's heartbeat on the bus.",
                                  labels=["node"])
        for node, age in sorted(status.heard.items()):
            heard.add_metric([node], age)
        yield heard

    def _http(self) -> Iterator[Metric]:
        counts = CounterMetricFamily("bazaar_frontend_http_requests",
                                     "HTTP requests answered, by route, method and status.",
                                     labels=["route", "method", "status"])
        for (route, method, status), n in sorted(self.requests.counts.items()):
            counts.add_metric([route, method, str(status)], n)
        yield counts
        latency = HistogramMetricFamily("bazaar_frontend_http_request_duration_seconds",
                                        "Time from the request's arrival in Flask to its answer, by route.",
                                        labels=["route"])
        for route in sorted(self.requests.latency):
            buckets, total = self.requests.buckets(route)
            latency.add_metric([route], buckets, total)
        yield latency

    def _cache(self, status: FrontendStatus) -> Iterator[Metric]:
        cache = status.cache
        yield GaugeMetricFamily("bazaar_frontend_cache_enabled", "1 if this frontend caches lookups.",
                                value=0 if cache is None else 1)
        if cache is None:
            return
        yield GaugeMetricFamily("bazaar_frontend_cache_entries", "Stocks in the lookup cache.", value=cache.size)
        yield GaugeMetricFamily("bazaar_frontend_cache_capacity", "The most stocks the cache holds.",
                                value=cache.capacity)
        yield GaugeMetricFamily("bazaar_frontend_cache_streaming",
                                "1 while the bus's change stream is whole and the cache serves.",
                                value=1 if cache.streaming else 0)
        for name, value, text in (
            ("hits", cache.hits, "Lookups answered from the cache."),
            ("misses", cache.misses, "Lookups the cache did not hold (sent to the catalog)."),
            ("bypassed", cache.bypassed, "Lookups sent to the catalog because the cache was off (stream not whole)."),
            ("installs", cache.installs, "Catalog replies put into the cache."),
            ("stale_refused", cache.stale_refused, "Catalog replies not cached because a newer version was known."),
            ("invalidations", cache.invalidations, "Entries dropped or replaced by a newer version."),
            ("evictions", cache.evictions, "Entries pushed out by the capacity (least recently used)."),
            ("flushes", cache.flushes, "Times the whole cache was emptied (a gap, a silent bus, a catalog restart)."),
        ):
            yield CounterMetricFamily(f"bazaar_frontend_cache_{name}", text, value=value)

    def _backend(self, status: FrontendStatus) -> Iterator[Metric]:
        b = status.backend
        calls = CounterMetricFamily("bazaar_frontend_backend_calls",
                                    "Requests sent to a backend (every attempt counts), by backend.",
                                    labels=["backend"])
        calls.add_metric(["catalog"], b.catalog_calls)
        calls.add_metric(["order"], b.order_calls)
        yield calls
        yield CounterMetricFamily("bazaar_frontend_backend_retries",
                                  "Backend attempts that failed and were tried again (no answer, not_leader, "
                                  "unavailable).", value=b.retries)
        yield CounterMetricFamily("bazaar_frontend_backend_timeouts",
                                  "Backend attempts sent that got no reply in time (outcome unknown).",
                                  value=b.timeouts)
        yield CounterMetricFamily("bazaar_frontend_replica_lookups",
                                  "Lookups an order replica answered because the catalog was down or behind.",
                                  value=b.replica_lookups)
        yield CounterMetricFamily("bazaar_frontend_backend_unavailable",
                                  "Requests given up (HTTP 503): no backend answered before the deadline.",
                                  value=b.unavailable)


def registry(requests: RequestStats, status: Callable[[], FrontendStatus]) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding the
    frontend's collector, so that several apps in one process do not clash."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FrontendCollector(requests, status))
    return reg


def render(reg: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (OpenMetrics if the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(reg), content_type
