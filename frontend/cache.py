"""The frontend's lookup cache: a bounded LRU kept fresh by the bus, pure.

No socket, no clock: the frontend's bus watcher feeds it bus messages and
the time; request handlers call :meth:`LookupCache.get` and
:meth:`LookupCache.install`.

Rules that keep it fresh (docs/ARCHITECTURE.md, promise 6):

* **Versions only rise.** A stock's version is the index of the order log
  entry that last changed it. The cache remembers the highest version it has heard of per
  stock (its *floor*), from invalidations and from trade replies; a lookup
  reply older than the floor is not installed, and an entry is only ever
  replaced by a newer version. A late lookup reply cannot undo an invalidation.
* **A continuous stream, or nothing.** Each of the catalog's change messages
  covers a run of log entries (``prev`` + 1 to ``index``), each starting where
  the last ended, and the catalog's heartbeat repeats the index it has
  applied. A run that does not start where the stream is, a heartbeat ahead
  of the stream, a restarted catalog, or silence from the broker or the
  catalog for a whole liveness window empties the cache, and nothing is
  cached until the stream is whole again. A lookup reply read before the
  stream (re)started (``info.index`` below ``since_seq``) is not installed:
  changes it predates may have been missed.
* **Read your writes.** A trade's reply carries the stock as the trade left it;
  :meth:`LookupCache.on_trade` installs it, so the same frontend never shows
  the pre-trade stock afterwards, whether or not the bus has spoken yet.

States::

    blind --broker and catalog heard, stream baseline set--> streaming
    streaming --gap, catalog restart, or broker/catalog silent--> blind (flushed)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from common.heartbeat import Liveness
from common.protocol import CacheStatus, Heartbeat, StockChanges, StockInfo

BROKER = "broker"
CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class Cached:
    """What a lookup answers with, and the version it is."""

    name: str
    price: float
    quantity: int
    version: int


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    installs: int = 0
    stale_refused: int = 0
    invalidations: int = 0
    evictions: int = 0
    flushes: int = 0
    flush_reasons: dict[str, int] = field(default_factory=dict)


class LookupCache:
    """An LRU of stock lookups.

    :param capacity: the most entries kept (the least recently used go first).
    :param window_s: silence from the broker or the catalog this long means the
        bus is lost (heartbeat interval x liveness).
    """

    def __init__(self, capacity: int, window_s: float) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[str, Cached] = OrderedDict()
        self.floors: dict[str, int] = {}
        self.liveness = Liveness(window_s)
        self.window_s = window_s
        self.behind: tuple[int, float] | None = None  # (a commit index the stream has yet to reach, since when)
        self.stream_seq: int | None = None
        self.since_seq: int | None = None
        self.catalog_incarnation: str | None = None
        self.streaming = False
        self.last_flush_reason = ""
        self.stats = CacheStats()

    # --- request side -----------------------------------------------------------

    def get(self, name: str) -> Cached | None:
        """The cached stock, or None (counted as a miss, or as bypassed while
        the stream is down)."""
        if not self.streaming:
            self.stats.bypassed += 1
            return None
        entry = self.entries.get(name)
        if entry is None:
            self.stats.misses += 1
            return None
        self.entries.move_to_end(name)
        self.stats.hits += 1
        return entry

    def install(self, info: StockInfo) -> bool:
        """Cache a lookup reply, unless it could be stale.

        :returns: True if it was cached.
        """
        if not self.streaming or self.since_seq is None or info.index < self.since_seq:
            return False
        if info.version < self.floors.get(info.name, 0):
            self.stats.stale_refused += 1  # a late reply lost the race to an invalidation
            return False
        # Once served, a version is the floor: an evicted entry never comes back older.
        self._raise_floor(info.name, info.version)
        return self._put(Cached(info.name, info.price, info.quantity, info.version))

    def on_trade(self, info: StockInfo | None, name: str) -> None:
        """A trade through this frontend was acknowledged; ``info`` is the
        stock right after it (None when the reply was a replay)."""
        if info is None:
            if self.entries.pop(name, None) is not None:
                self.stats.invalidations += 1
            return
        self._raise_floor(info.name, info.version)
        self._refresh(Cached(info.name, info.price, info.quantity, info.version))

    def invalidate(self, name: str) -> bool:
        """Drop one entry (the operator's ``DELETE /invalidate/<name>``).

        :returns: True if it was cached.
        """
        if self.entries.pop(name, None) is None:
            return False
        self.stats.invalidations += 1
        return True

    # --- bus side ---------------------------------------------------------------

    def on_changes(self, msg: StockChanges) -> None:
        """The catalog applied log entries ``msg.prev + 1`` to ``msg.index``."""
        for change in msg.changes:
            self._raise_floor(change.name, change.version)
        if self.stream_seq is not None:
            if msg.prev > self.stream_seq:
                self._lose_stream(f"gap: missed entries {self.stream_seq + 1}-{msg.prev}", restart_at=msg.index)
            elif msg.index > self.stream_seq:
                self.stream_seq = msg.index
        for change in msg.changes:
            self._refresh(Cached(change.name, change.price, change.quantity, change.version))

    def on_heartbeat(self, beat: Heartbeat, now: float) -> None:
        """A heartbeat; the broker's and the catalog's matter (a catalog
        heartbeat without its status keeps the catalog alive, nothing more)."""
        node, incarnation = beat.node, beat.incarnation
        if node not in (BROKER, CATALOG):
            return
        self.liveness.heard(node, now, incarnation)
        if node == CATALOG:
            if beat.catalog is None:
                return
            applied = beat.catalog.applied
            if self.catalog_incarnation not in (None, incarnation):
                self._lose_stream("catalog restarted", restart_at=applied)
            elif self.stream_seq is None:
                self.stream_seq = self.since_seq = applied
            elif applied > self.stream_seq:
                self._lose_stream(f"missed changes up to entry {applied}", restart_at=applied)
            elif applied < self.stream_seq:
                self._lose_stream(f"catalog went back to entry {applied}", restart_at=applied)
            self.catalog_incarnation = incarnation
        self._update_streaming(now)

    def on_leader_commit(self, index: int, now: float) -> None:
        """The leader says the log has committed up to ``index``. A stream that
        has not reached an index for a whole liveness window lags the log (a
        catalog cut off from the replicas, or whose disk is full, still beats
        but applies nothing): what is cached may be stale, so the cache empties."""
        if self.stream_seq is not None and index > self.stream_seq and self.behind is None:
            self.behind = (index, now)  # tick() checks that the stream gets there within a window

    def tick(self, now: float) -> None:
        """Notice silence from the broker or the catalog."""
        for node in self.liveness.expire(now):
            self._lose_stream(f"{node} silent", restart_at=None)
        if self.behind is not None:
            index, since = self.behind
            if self.stream_seq is None or self.stream_seq >= index:
                self.behind = None
            elif now - since >= self.window_s:
                self.behind = None
                self._lose_stream(f"catalog lags the log: entry {index} committed {now - since:.1f}s ago, "
                                  f"the stream is at {self.stream_seq}", restart_at=None)
        self._update_streaming(now)

    def bus_disconnected(self) -> None:
        """The SUB socket's connection to the broker closed (socket monitor)."""
        self.liveness.mark_dead(BROKER)
        self._lose_stream("broker disconnected", restart_at=None)
        self.streaming = False

    # --- queries ------------------------------------------------------------------

    def snapshot(self) -> CacheStatus:
        """The figures the frontend's heartbeat and ``GET /stats`` carry."""
        s = self.stats
        lookups = s.hits + s.misses
        return CacheStatus(
            size=len(self.entries), capacity=self.capacity, streaming=self.streaming,
            hits=s.hits, misses=s.misses, bypassed=s.bypassed, installs=s.installs,
            stale_refused=s.stale_refused,
            invalidations=s.invalidations, evictions=s.evictions, flushes=s.flushes,
            hit_rate=round(s.hits / lookups, 4) if lookups else 0.0, stream_seq=self.stream_seq,
        )

    # --- internals ----------------------------------------------------------------

    def _update_streaming(self, now: float) -> None:
        self.streaming = (
            self.stream_seq is not None
            and self.liveness.is_alive(BROKER, now)
            and self.liveness.is_alive(CATALOG, now)
        )

    def _raise_floor(self, name: str, version: int) -> None:
        if version > self.floors.get(name, 0):
            self.floors[name] = version

    def _refresh(self, entry: Cached) -> None:
        """Replace a cached entry by a newer version (never insert)."""
        current = self.entries.get(entry.name)
        if current is not None and current.version < entry.version:
            self.entries[entry.name] = entry
            self.stats.invalidations += 1

    def _put(self, entry: Cached) -> bool:
        current = self.entries.get(entry.name)
        if current is not None and current.version >= entry.version:
            return False
        self.entries[entry.name] = entry
        self.entries.move_to_end(entry.name)
        self.stats.installs += 1
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
            self.stats.evictions += 1
        return True

    def _lose_stream(self, reason: str, restart_at: int | None) -> None:
        """Empty the cache; caching resumes from change ``restart_at`` (or
        from the next catalog heartbeat when None)."""
        if self.entries or self.stream_seq is not None:
            self.stats.flushes += 1
            key = reason.split(":")[0]
            self.stats.flush_reasons[key] = self.stats.flush_reasons.get(key, 0) + 1
        self.last_flush_reason = reason
        self.entries.clear()
        self.stream_seq = self.since_seq = restart_at
