"""The order log's storage interface, and an in-memory implementation.

The replication state machines (:mod:`order.raft`, :mod:`order.desk`) read
and write the log only through :class:`LogStore`. :meth:`LogStore.append`
returns once the entries are durable. The leader instead *stages* its new
entries (visible to reads at once), sends them to the followers, and only
then *flushes* them to disk, so that its own fsync runs while the followers
write theirs (Raft's section 10.2.1); it counts itself towards a majority
only after the flush. Production
uses :class:`order.store.SqliteLog`; unit tests and the deterministic
simulator use :class:`MemoryLog`, which "survives a crash" simply by being
handed to the restarted replica.

Indices start at 1; index 0 is the empty prefix, with term 0.
"""

from __future__ import annotations

from typing import Protocol

from common.book import Book, Stock
from common.protocol import LogEntry


class LogStore(Protocol):
    """What a replica needs from durable storage."""

    def hard_state(self) -> tuple[int, int | None]:
        """The current term and the candidate voted for in it."""

    def save_hard_state(self, term: int, voted_for: int | None) -> None:
        """Durably record the term and vote (before anyone is told)."""

    def last_index(self) -> int: ...

    def last_term(self) -> int: ...

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``, 0 for index 0, None past the end."""

    def first_index_of_term(self, term: int) -> int:
        """The lowest index whose term is ``term`` or later (terms never fall
        along a log), the log's length + 1 if none: for quick conflict back-off."""

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        """Entries ``lo..hi`` inclusive (clamped to the log)."""

    def append(self, entries: list[LogEntry], truncate_from: int | None = None) -> None:
        """Durably drop entries from ``truncate_from`` on, then add ``entries``
        (flushing anything staged first)."""

    def stage(self, entries: list[LogEntry]) -> None:
        """Add ``entries`` at the end, visible to reads but not yet durable."""

    def flush(self) -> None:
        """Make every staged entry durable."""

    def by_request(self, request_id: str) -> LogEntry | None:
        """The trade entry carrying this request id, committed or not."""

    def by_txn(self, txn: int) -> LogEntry | None:
        """The trade entry with this transaction number, committed or not."""

    def last_txn(self) -> int:
        """The highest transaction number in the log, 0 if none (numbers start at 1)."""

    def load_book(self) -> Book:
        """The book as last written (:meth:`save_book`): the fold of the
        committed log up to its ``applied`` index (an empty book at 0)."""

    def save_book(self, book: Book) -> None:
        """Keep the book's changes (:meth:`common.book.Book.take_dirty`) to
        write with the next durable write; lost in a crash before it, and
        rebuilt then from the log."""

    def is_blank(self) -> bool:
        """Whether the data is new (a new cluster, or a lost disk) and the
        replica has not yet caught up with a leader."""

    def clear_blank(self) -> None:
        """Durably record that the replica caught up (or leads)."""


class MemoryLog:
    """A :class:`LogStore` held in memory (tests and simulation)."""

    def __init__(self, blank: bool = False) -> None:
        """:param blank: as a replica's new (or lost) disk is."""
        self.blank = blank
        self.term = 0
        self.voted_for: int | None = None
        self.log: list[LogEntry] = []
        self._rid: dict[str, LogEntry] = {}
        self._txn: dict[int, LogEntry] = {}
        self.unflushed = 0
        self.book: tuple[dict[str, Stock], int, int] = ({}, 0, 0)  # as written: stocks, applied, last_txn
        self._book: tuple[dict[str, Stock], int, int] | None = None  # to write with the next write

    def hard_state(self) -> tuple[int, int | None]:
        return self.term, self.voted_for

    def save_hard_state(self, term: int, voted_for: int | None) -> None:
        self.term, self.voted_for = term, voted_for
        self._write_book()

    def load_book(self) -> Book:
        stocks, applied, last_txn = self.book
        return Book(stocks, applied, last_txn)

    def save_book(self, book: Book) -> None:
        pending = dict(self.book[0] if self._book is None else self._book[0])
        pending.update((s.name, s) for s in book.take_dirty())
        self._book = (pending, book.applied, book.last_txn)  # (a snapshot: the simulator checks what was written)

    def _write_book(self) -> None:
        if self._book is not None:
            self.book, self._book = self._book, None

    def last_index(self) -> int:
        return len(self.log)

    def last_term(self) -> int:
        return self.log[-1].term if self.log else 0

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        if 0 < index <= len(self.log):
            return self.log[index - 1].term
        return None

    def first_index_of_term(self, term: int) -> int:
        for entry in self.log:
            if entry.term >= term:
                return entry.index
        return len(self.log) + 1

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        return self.log[max(lo, 1) - 1 : max(hi, 0)]

    def stage(self, entries: list[LogEntry]) -> None:
        self._add(entries, None)
        self.unflushed += len(entries)

    def flush(self) -> None:
        self.unflushed = 0
        self._write_book()

    def lose_unflushed(self) -> None:
        """What a crash does to staged entries and an unwritten book (for the simulator)."""
        if self.unflushed:
            self._add([], len(self.log) - self.unflushed + 1)
            self.unflushed = 0
        self._book = None

    def append(self, entries: list[LogEntry], truncate_from: int | None = None) -> None:
        self.unflushed = 0
        self._add(entries, truncate_from)
        self._write_book()

    def _add(self, entries: list[LogEntry], truncate_from: int | None) -> None:
        if truncate_from is not None:
            for entry in self.log[truncate_from - 1 :]:
                if entry.trade is not None:
                    self._rid.pop(entry.trade.request_id, None)
                    if entry.trade.txn is not None:
                        self._txn.pop(entry.trade.txn, None)
            del self.log[truncate_from - 1 :]
        for entry in entries:
            if entry.index != len(self.log) + 1:
                raise ValueError(f"entry {entry.index} does not follow {len(self.log)}")
            if entry.trade is not None:
                txn = entry.trade.txn
                if entry.trade.request_id in self._rid or (txn is not None and txn in self._txn):
                    raise ValueError(f"entry {entry.index} repeats a request id or transaction number")
                self._rid[entry.trade.request_id] = entry
                if txn is not None:
                    self._txn[txn] = entry
            self.log.append(entry)

    def by_request(self, request_id: str) -> LogEntry | None:
        return self._rid.get(request_id)

    def by_txn(self, txn: int) -> LogEntry | None:
        return self._txn.get(txn)

    def last_txn(self) -> int:
        return max(self._txn, default=0)

    def is_blank(self) -> bool:
        return self.blank

    def clear_blank(self) -> None:
        self.blank = False
