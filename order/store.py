"""The order log in SQLite: the :class:`order.log.LogStore` of a real replica.

Tables::

    log(idx PK, term, txn UNIQUE, request_id UNIQUE, name, quantity, side, status, genesis)
    book(name PK, price, quantity, volume, version)
                            -- the fold of the committed log up to meta 'applied' (common.book)
    meta(key PK, value)     -- 'term' and 'voted_for' (Raft's hard state); 'blank' (1 from the
                               creation of the file until the replica caught up with a leader);
                               'applied' and 'last_txn' (how far the book goes); 'cluster',
                               'node' and 'schema' (whose data this is, checked at every start)

A no-op entry has NULL trade columns; a refused trade has a NULL ``txn`` and
its ``status``; the genesis (entry 1) holds the initial stocks as JSON in
``genesis``. The UNIQUE constraints are a last line of defence: a second
entry for one request id or transaction number cannot be written, whatever
the code above does.

The book is written with the index it was folded to, in the same
transaction as a log write (an append, a flush, a vote), once at least
:data:`BOOK_EVERY` entries have been folded since it was last written (and
at a clean stop): it is never on an acknowledgement's path, it costs a few
pages of write-ahead log now and then rather than at every commit, and a
replica that starts replays only the committed entries after it.

WAL mode with ``synchronous=FULL``: :meth:`SqliteLog.append`,
:meth:`SqliteLog.flush` and :meth:`SqliteLog.save_hard_state` return after
the commit reached the disk, which is what lets a replica acknowledge entries
and votes (a vote forgotten in a crash could elect two leaders in one term).
One call writes a whole batch in one transaction (group commit). Entries a
leader has staged but not flushed live in memory, and every read sees them.

The last :data:`TAIL_MAX` entries are also kept in memory (the *tail*), with
their request ids and transaction numbers: replication, retries and order
reads almost always touch recent entries, and then read no SQL at all.

Storage failures come out as the storage errors of :mod:`common.errors`: a
full disk (:class:`StorageFull`) writes nothing; a failed write or fsync
(:class:`StorageFailed`) leaves the log as the file holds it, and the replica
restarts distrusting everything after :attr:`SqliteLog.synced_index`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from common.book import Book, Stock
from common.errors import StorageFailed
from common.protocol import LogEntry, StockRow, TradeRecord, TradeStatus
from common.storage import Faults, classify, open_database, write

# Recent entries kept in memory (plus whatever is staged and not yet flushed).
TAIL_MAX = 4096
# Entries folded into the book between two writes of it (a start replays at most about this many).
BOOK_EVERY = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    idx        INTEGER PRIMARY KEY,
    term       INTEGER NOT NULL,
    txn        INTEGER UNIQUE,
    request_id TEXT UNIQUE,
    name       TEXT,
    quantity   INTEGER,
    side       TEXT,
    status     TEXT,
    genesis    TEXT
);
CREATE TABLE IF NOT EXISTS book (
    name     TEXT PRIMARY KEY,
    price    REAL NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    volume   INTEGER NOT NULL,
    version  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
);
"""

_COLUMNS = "idx, term, txn, request_id, name, quantity, side, status, genesis"


def _entry(row: tuple) -> LogEntry:
    idx, term, txn, request_id, name, quantity, side, status, genesis = row
    trade = None if request_id is None else TradeRecord(request_id, name, quantity, side, txn,
                                                          TradeStatus(status))
    stocks = None if genesis is None else [StockRow(*r) for r in json.loads(genesis)]
    return LogEntry(index=idx, term=term, trade=trade, genesis=stocks)


def _row(e: LogEntry) -> tuple:
    t = e.trade
    genesis = None if e.genesis is None else json.dumps([[r.name, r.price, r.quantity, r.volume]
                                                         for r in e.genesis])
    if t is None:
        return (e.index, e.term, None, None, None, None, None, None, genesis)
    return (e.index, e.term, t.txn, t.request_id, t.name, t.quantity, t.side, t.status.value, genesis)


class SqliteLog:
    """A replica's durable log. Use from one thread only.

    :param path: the SQLite file; created if missing.
    """

    def __init__(self, path: Path, node: str = "order", cluster_id: str = "bazaar",
                 faults: Faults | None = None, distrust_after: int | None = None) -> None:
        """:param node: the replica's name, kept with its data (a file of another node is refused).
        :param cluster_id: the cluster's id, kept with the data likewise.
        :param faults: injected storage failures (fault tests only).
        :param distrust_after: drop every entry after this index before anything
            else: what was written since the last good fsync (the replica
            restarted after a failed one, :class:`common.errors.StorageFailed`).
        :raises StorageCorrupt: when the data cannot be trusted (:func:`common.storage.open_database`).
        """
        self.path = path
        self.faults = faults or Faults(None)
        opened = open_database(path, node, cluster_id, SCHEMA, f"./run.sh reset {node}", created=(("blank", 1),))
        self.db = opened.db
        self._blank = self._meta("blank") == 1
        self._book: Book | None = None  # the replica's book, written with a later transaction
        self._book_written = self._meta("applied") or 0
        self._tail: list[LogEntry] = []     # the last entries, contiguous, ending at the last index
        self._unflushed = 0                 # how many at the end of the tail are only staged
        self._rid: dict[str, LogEntry] = {}
        self._txn: dict[int, LogEntry] = {}
        if distrust_after is not None:
            def distrust() -> None:
                self.db.execute("DELETE FROM log WHERE idx > ?", (distrust_after,))
                if (self._meta("applied") or 0) > distrust_after:  # folded from entries now dropped: fold again
                    self.db.execute("DELETE FROM book")
                    self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                        (("applied", 0), ("last_txn", 0)))

            self._write(distrust)
        self._refresh()
        self.synced_index = self._last_index  # the last index known to be on the disk

    def _refresh(self) -> None:
        row = self.db.execute("SELECT idx, term FROM log ORDER BY idx DESC LIMIT 1").fetchone()
        self._last_index, self._last_term = row if row else (0, 0)
        self._last_txn = self.db.execute("SELECT COALESCE(MAX(txn), 0) FROM log").fetchone()[0]
        self._tail, self._rid, self._txn = [], {}, {}
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM log WHERE idx > ? ORDER BY idx",
                               (self._last_index - TAIL_MAX,)).fetchall()
        self._remember([_entry(r) for r in rows])

    # --- the in-memory tail ---------------------------------------------------

    def _tail_first(self) -> int:
        return self._tail[0].index if self._tail else self._last_index + 1

    def _remember(self, entries: list[LogEntry]) -> None:
        self._tail.extend(entries)
        for e in entries:
            if e.trade is not None:
                self._rid[e.trade.request_id] = e
                if e.trade.txn is not None:
                    self._txn[e.trade.txn] = e
        excess = len(self._tail) - max(TAIL_MAX, self._unflushed)
        if excess > 0:
            for e in self._tail[:excess]:
                self._forget(e)
            del self._tail[:excess]

    def _forget(self, e: LogEntry) -> None:
        if e.trade is not None:
            if self._rid.get(e.trade.request_id) is e:
                del self._rid[e.trade.request_id]
            if e.trade.txn is not None and self._txn.get(e.trade.txn) is e:
                del self._txn[e.trade.txn]

    # --- reads ----------------------------------------------------------------

    def hard_state(self) -> tuple[int, int | None]:
        rows = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('term', 'voted_for')"))
        return rows.get("term", 0), rows.get("voted_for")

    def last_index(self) -> int:
        return self._last_index

    def last_term(self) -> int:
        return self._last_term

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        if index > self._last_index or index < 0:
            return None
        first = self._tail_first()
        if index >= first:
            return self._tail[index - first].term
        row = self.db.execute("SELECT term FROM log WHERE idx = ?", (index,)).fetchone()
        return None if row is None else row[0]

    def first_index_of_term(self, term: int) -> int:
        # Terms never decrease along a log, so a binary search finds the first.
        lo, hi = 1, self._last_index + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if (self.term_at(mid) or 0) < term:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        lo, hi = max(lo, 1), min(hi, self._last_index)
        if lo > hi:
            return []
        first = self._tail_first()
        found: list[LogEntry] = []
        if lo < first:
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM log WHERE idx BETWEEN ? AND ? ORDER BY idx",
                                   (lo, min(hi, first - 1))).fetchall()
            found = [_entry(r) for r in rows]
        if hi >= first:
            found += self._tail[max(lo, first) - first: hi - first + 1]
        return found

    def by_request(self, request_id: str) -> LogEntry | None:
        entry = self._rid.get(request_id)
        if entry is not None:
            return entry
        row = self.db.execute(f"SELECT {_COLUMNS} FROM log WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else _entry(row)

    def by_txn(self, txn: int) -> LogEntry | None:
        entry = self._txn.get(txn)
        if entry is not None:
            return entry
        row = self.db.execute(f"SELECT {_COLUMNS} FROM log WHERE txn = ?", (txn,)).fetchone()
        return None if row is None else _entry(row)

    def last_txn(self) -> int:
        return self._last_txn

    def load_book(self) -> Book:
        stocks = {row[0]: Stock(*row) for row in
                  self.db.execute("SELECT name, price, quantity, volume, version FROM book")}
        return Book(stocks, applied=self._meta("applied") or 0, last_txn=self._meta("last_txn") or 0)

    def save_book(self, book: Book) -> None:
        """Write the book's changes with a later transaction (not on its own:
        it is rebuilt from the log if lost): cheap to call at every commit."""
        self._book = book

    # --- writes ---------------------------------------------------------------

    def save_hard_state(self, term: int, voted_for: int | None) -> None:
        self._commit_meta(("term", term), ("voted_for", voted_for))

    def is_blank(self) -> bool:
        return self._blank

    def clear_blank(self) -> None:
        self._commit_meta(("blank", 0))
        self._blank = False

    def _meta(self, key: str) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _commit_meta(self, *pairs: tuple[str, int | None]) -> None:
        self._write(lambda: self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", pairs))

    def _write(self, work) -> None:
        """Run ``work`` in one transaction (:func:`common.storage.write`), with
        the book's changes since the last one."""
        book = self._book
        if book is None or book.applied - self._book_written < BOOK_EVERY:
            write(self.db, self.path, self.faults, work)
            return
        applied, last_txn, stocks = book.applied, book.last_txn, book.take_dirty()

        def with_book() -> None:
            work()
            self.db.executemany("INSERT OR REPLACE INTO book(name, price, quantity, volume, version) "
                                "VALUES (?,?,?,?,?)",
                                [(s.name, s.price, s.quantity, s.volume, s.version) for s in stocks])
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                (("applied", applied), ("last_txn", last_txn)))

        try:
            write(self.db, self.path, self.faults, with_book)
        except BaseException:
            book.dirty.update(s.name for s in stocks)  # not written: still to write
            raise
        self._book, self._book_written = None, applied

    def stage(self, entries: list[LogEntry]) -> None:
        if entries and entries[0].index != self._last_index + 1:
            raise ValueError(f"entry {entries[0].index} does not follow {self._last_index}")
        self._unflushed += len(entries)
        self._added(entries)

    def flush(self) -> None:
        """Make the staged entries durable. If that fails they are gone: the
        log is what the disk holds (reloaded), and the error propagates."""
        if not self._unflushed:
            return
        try:
            self._insert(self._tail[-self._unflushed:], None)
        except BaseException:
            self._unflushed = 0
            self._reload()
            raise
        self._unflushed = 0
        self.synced_index = self._last_index

    def append(self, entries: list[LogEntry], truncate_from: int | None = None) -> None:
        self.flush()
        if truncate_from is not None and not 1 <= truncate_from <= self._last_index + 1:
            raise ValueError(f"cannot truncate from {truncate_from}: the log ends at {self._last_index}")
        expected = (self._last_index if truncate_from is None else truncate_from - 1) + 1
        if entries and entries[0].index != expected:
            raise ValueError(f"entry {entries[0].index} does not follow {expected - 1}")
        try:
            self._insert(entries, truncate_from)
        except StorageFailed:
            self._reload()
            raise
        if truncate_from is not None:
            self._refresh()
        else:
            self._added(entries)
        self.synced_index = self._last_index

    def _reload(self) -> None:
        """After a failed write: the log is what the file holds. A disk that
        fails the reads too raises :class:`StorageFailed`, never a bare
        SQLite error over the first one."""
        try:
            self._refresh()
        except sqlite3.Error as exc:
            raise classify(exc, self.path) or StorageFailed(f"storage failed: {self.path}: {exc}",
                                                           str(self.path)) from None

    def _added(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        self._last_index, self._last_term = entries[-1].index, entries[-1].term
        for e in entries:
            if e.trade is not None and e.trade.txn is not None:
                self._last_txn = max(self._last_txn, e.trade.txn)
        self._remember(entries)

    def _insert(self, entries: list[LogEntry], truncate_from: int | None) -> None:
        """One transaction: drop from ``truncate_from``, then add ``entries``."""
        rows = [_row(e) for e in entries]

        def work() -> None:
            if truncate_from is not None:
                self.db.execute("DELETE FROM log WHERE idx >= ?", (truncate_from,))
            self.db.executemany(f"INSERT INTO log({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)

        self._write(work)

    def close(self) -> None:
        """Write what is staged, and the book (a clean stop replays nothing at the next start)."""
        try:
            self.flush()
            if self._book is not None:
                self._book_written = -BOOK_EVERY  # whatever it is, write it now
                self._write(lambda: None)
        finally:
            self.db.close()
