"""The catalog as a projection of the order log, pure.

The catalog holds the stock table as the fold of the committed order log
up to the index it has applied (:mod:`common.book`), and nothing else: it
decides no trade and no acknowledgement waits on it. It fetches committed
entries from the order replicas (:class:`common.protocol.ReadCommitted`, a
long poll: the replica answers as soon as more commit), applies each page in
one write of its store with the index reached, publishes what changed, and
answers lookups from memory.

:class:`Projection` is what the catalog node (:mod:`catalog.server`) and the
deterministic simulator (``tests/sim``) both run. It imports no socket and
no database: its state goes through a :class:`CatalogStore`, whose
``commit`` is atomic when it returns. Production uses
:class:`catalog.store.SqliteCatalogStore`; unit tests and the simulator use
:class:`MemoryCatalogStore`.

The rules:

* **Idempotent by index.** Entries at or below the applied index are
  skipped; a page that does not start right after it (a gap: a reply to an
  older fetch, say, after the catalog lost its last writes) changes nothing,
  and the next fetch asks again from the applied index.
* **Applied index and table together.** A page's stocks and the index they
  reach are one write; a refused write (a full disk) changes nothing, not
  even in memory, and fetching pauses until the disk takes writes again.
* **Fresh answers only.** A lookup names the least index it may be
  answered from (what its frontend has already shown); a catalog that has
  not reached it holds the lookup briefly, then answers ``behind``, and the
  frontend asks an order replica. So does a catalog still catching up.
* **Any replica will do.** The catalog reads from the replica the last
  answer named as leader (the freshest), and from the next one when a fetch
  times out or its connection drops, so it catches up while any replica is up.

States::

    blank (nothing applied) --genesis applied--> behind --reached the commit it knows--> current
    current --a replica tells of a higher commit, a fetch goes unanswered,
              or the disk refuses a page--> behind
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from common.book import Book, Stock
from common.errors import StorageFull
from common.protocol import (
    CommittedEntries, Error, ErrorCode, LogEntry, Lookup, Message, ReadCommitted, StockChanged, StockChanges,
)

# Entries asked for in one fetch, and how long a replica may hold it.
FETCH_LIMIT = 1000
# After a fetch could not leave (no connection to its replica), the next try is this much later.
RETRY_S = 0.05
# How long a lookup that needs an index the catalog has not reached may wait for it.
LOOKUP_WAIT_S = 0.1
LOOKUPS_PARKED_MAX = 1000


class CatalogStore(Protocol):
    """What the catalog needs from storage."""

    def load(self) -> Book:
        """The table and the index it was folded to, as last committed."""

    def commit(self, stocks: list[Stock], applied: int, last_txn: int) -> None:
        """Write these stocks and the index they reach, atomically. On an
        exception nothing of it was written."""

    def close(self) -> None: ...


# --- outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class ToReplica:
    """Send ``msg`` to order replica ``replica``."""

    replica: int
    msg: Message


@dataclass(frozen=True)
class Reply:
    """Answer the request identified by ``ref`` (a ROUTER envelope)."""

    ref: Any
    msg: Message


@dataclass(frozen=True)
class Publish:
    """Publish what a committed page changed, on the bus."""

    msg: StockChanges


@dataclass(frozen=True)
class CaughtUp:
    """The catalog reached the commit index the replicas told it of."""

    index: int


@dataclass(frozen=True)
class Refused:
    """The store refused a page for want of space: fetching pauses until
    :meth:`Projection.storage_recovered`."""

    error: StorageFull


@dataclass
class _Fetch:
    replica: int
    after: int
    sent_at: float


class Projection:
    """The catalog's state over ``store``. Use from one thread.

    :param replicas: the order replicas' ids (the ones to read from).
    :param wait_s: how long a replica may hold a fetch (the long poll).
    :param timeout_s: how long after that a fetch counts as lost.
    """

    def __init__(self, store: CatalogStore, replicas: list[int], wait_s: float, timeout_s: float,
                 now: float) -> None:
        self.store = store
        self.book = store.load()
        self.replicas = sorted(replicas)
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        self.commit = self.book.applied  # the highest commit index a replica told us of
        self.source = self.replicas[-1]  # the highest id leads when all is well (order.raft)
        self.fetch: _Fetch | None = None
        self.retry_at: float | None = None  # when to send the fetch that could not leave
        self.parked: list[tuple[Any, Lookup, float]] = []
        self.paused = False  # the store refused a write: no fetch until it takes one again
        self.current = False  # reached the commit we know of (for CaughtUp)
        self.applied_trades = 0  # trade entries applied since start (for the heartbeat)

    # --- inputs ---------------------------------------------------------------

    def start(self, now: float) -> list:
        return [self._send_fetch(now)]

    def on_entries(self, replica: int, msg: CommittedEntries, now: float) -> list:
        """A replica's answer to a fetch.

        :raises common.book.BrokenFold: the entries break the fold (never guessed around).
        :raises StorageFailed: (from the store) the write failed: the node restarts from its disk.
        """
        out: list = []
        if self.fetch is not None and self.fetch.replica == replica:
            self.fetch = None
        self.commit = max(self.commit, msg.commit)
        if msg.leader is not None and msg.leader in self.replicas:
            self.source = msg.leader
        fresh = self._fresh(msg.entries)
        if fresh and not self.paused:
            draft = self.book.child()
            changed = draft.apply_all(fresh)
            try:
                self.store.commit(changed, draft.applied, draft.last_txn)
            except StorageFull as exc:
                self.paused = True
                self.current = False  # the log goes on without us: answer nothing as if we were at its head
                out.append(Refused(exc))
            else:
                prev = self.book.applied
                self.book.merge(draft)
                self.applied_trades += sum(1 for e in fresh if e.trade is not None and e.trade.txn is not None)
                out.append(Publish(StockChanges(prev=prev, index=self.book.applied, changes=[
                    StockChanged(name=s.name, price=s.price, quantity=s.quantity, version=s.version)
                    for s in changed])))
                out.extend(self._answer_parked(now))
        caught_up = self.book.started and self.book.applied >= self.commit and not self.paused
        if caught_up and not self.current:
            out.append(CaughtUp(self.book.applied))
        self.current = caught_up
        if self.fetch is None and not self.paused:
            out.append(self._send_fetch(now))
        return out

    def on_lookup(self, ref: Any, msg: Lookup, now: float) -> list:
        if self._fresh_enough(msg.min_index) or not self.book.started:
            return [Reply(ref, self._lookup(msg))]
        if self.current and len(self.parked) < LOOKUPS_PARKED_MAX:
            self.parked.append((ref, msg, now + LOOKUP_WAIT_S))  # answered as soon as we get there
            return []
        return [Reply(ref, self._behind(msg.min_index))]

    def replica_down(self, replica: int, now: float) -> list:
        """The connection to ``replica`` dropped: ask another one now."""
        if self.fetch is None or self.fetch.replica != replica:
            return []
        self.fetch = None
        self.source = self._next(replica)
        return [] if self.paused else [self._send_fetch(now)]

    def send_failed(self, replica: int, now: float) -> list:
        """The fetch to ``replica`` could not leave (no connection): try the
        next replica shortly, or the first one whose connection comes up."""
        if self.fetch is not None and self.fetch.replica == replica:
            self.fetch = None
            self.source = self._next(replica)
            self.retry_at = now + RETRY_S
        return []

    def replica_up(self, replica: int, now: float) -> list:
        """The connection to ``replica`` is up: a fetch waiting to leave goes to it now."""
        if self.fetch is not None or self.retry_at is None or self.paused:
            return []
        self.source = replica
        return [self._send_fetch(now)]

    def storage_recovered(self, now: float) -> list:
        self.paused = False
        return [] if self.fetch is not None else [self._send_fetch(now)]

    def tick(self, now: float) -> list:
        out: list = []
        if self.parked and min(until for _, _, until in self.parked) <= now:
            due = [p for p in self.parked if p[2] <= now]
            self.parked = [p for p in self.parked if p[2] > now]
            out.extend(Reply(ref, self._behind(msg.min_index)) for ref, msg, _ in due)
        if self.fetch is None and self.retry_at is not None and now >= self.retry_at and not self.paused:
            out.append(self._send_fetch(now))
        if self.fetch is not None and now >= self.fetch.sent_at + self.wait_s + self.timeout_s:
            lost = self.fetch.replica
            self.fetch = None
            self.current = False  # no replica answered for a while: the log may have gone on without us
            self.source = self._next(lost)
            if not self.paused:
                out.append(self._send_fetch(now))
        return out

    def next_deadline(self) -> float | None:
        times = [until for _, _, until in self.parked]
        if self.fetch is not None:
            times.append(self.fetch.sent_at + self.wait_s + self.timeout_s)
        elif self.retry_at is not None and not self.paused:
            times.append(self.retry_at)
        return min(times, default=None)

    # --- internals ----------------------------------------------------------------

    def _fresh(self, entries: list[LogEntry]) -> list[LogEntry]:
        """The entries to apply: those after the applied index, if they start
        right after it (none otherwise: a gap is fetched again, never skipped)."""
        fresh = [e for e in entries if e.index > self.book.applied]
        return fresh if fresh and fresh[0].index == self.book.applied + 1 else []

    def _fresh_enough(self, min_index: int) -> bool:
        """May a lookup that needs ``min_index`` be answered from here?"""
        return self.book.started and self.book.applied >= min_index and self.current

    def _lookup(self, msg: Lookup) -> Message:
        if not self.book.started:
            return self._behind(msg.min_index)
        stock = self.book.get(msg.name)
        if stock is None:
            return Error(ErrorCode.STOCK_NOT_FOUND, "stock not found")
        return stock.info(self.book.applied)

    def _behind(self, min_index: int) -> Error:
        state = "is catching up" if self.book.applied < self.commit else "has not yet reached it"
        return Error(ErrorCode.BEHIND, f"the catalog has applied the log up to {self.book.applied} of "
                                       f"{self.commit} and {state} (asked for {min_index})",
                     index=self.book.applied)

    def _answer_parked(self, now: float) -> list:
        if not self.parked:
            return []
        ready = [p for p in self.parked if self._fresh_enough(p[1].min_index)]
        self.parked = [p for p in self.parked if not self._fresh_enough(p[1].min_index)]
        return [Reply(ref, self._lookup(msg)) for ref, msg, _ in ready]

    def _send_fetch(self, now: float) -> ToReplica:
        self.retry_at = None
        self.fetch = _Fetch(self.source, self.book.applied, now)
        return ToReplica(self.source, ReadCommitted(after=self.book.applied, limit=FETCH_LIMIT,
                                                    wait_ms=int(self.wait_s * 1000)))

    def _next(self, replica: int) -> int:
        at = self.replicas.index(replica) if replica in self.replicas else -1
        return self.replicas[(at + 1) % len(self.replicas)]


class MemoryCatalogStore:
    """A :class:`CatalogStore` held in memory (tests and simulation), which
    can lose its last writes the way a power cut loses a ``synchronous=NORMAL``
    database's (:meth:`lose_recent`).

    :param keep: how many past writes it can go back to.
    """

    def __init__(self, keep: int = 8) -> None:
        self.states: list[tuple[dict[str, Stock], int, int]] = [({}, 0, 0)]
        self.keep = keep

    def load(self) -> Book:
        stocks, applied, last_txn = self.states[-1]
        return Book(stocks, applied, last_txn)

    def commit(self, stocks: list[Stock], applied: int, last_txn: int) -> None:
        table = dict(self.states[-1][0])
        table.update((s.name, s) for s in stocks)
        self.states.append((table, applied, last_txn))
        del self.states[:-self.keep]

    def lose_recent(self, count: int) -> None:
        """Forget the last ``count`` writes (never the oldest one kept)."""
        del self.states[max(1, len(self.states) - count):]

    @property
    def stocks(self) -> dict[str, Stock]:
        return self.states[-1][0]

    @property
    def applied(self) -> int:
        return self.states[-1][1]

    def close(self) -> None:
        pass
