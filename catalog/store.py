"""The catalog's durable state in SQLite: the :class:`catalog.rules.CatalogStore`
of the real catalog node.

Tables::

    stocks(name PK, price, quantity, volume, version)
    journal(request_id PK, seq UNIQUE, status, name, quantity, side, epoch)
    initial(name PK, quantity, volume)   -- the CSV's figures, to compute the stocks again from the journal
    meta(key PK, value)      -- 'seq': last change; 'fence': highest leader epoch; 'cluster', 'node'

The rules that fill them (journal, replay, change numbers, fence) live in
:mod:`catalog.rules`; this module only reads and writes rows. One
:meth:`SqliteCatalogStore.commit` is one transaction (a whole batch: group
commit). SQLite runs in WAL mode with ``synchronous=FULL``: a batch is
acknowledged only after its commit reached the disk, so it survives a power
cut, not just a killed process.

Storage failures come out as the storage errors of :mod:`common.errors`: a
full disk (:class:`StorageFull`) writes nothing; a failed write or fsync
(:class:`StorageFailed`) makes the catalog restart distrusting everything
after :attr:`SqliteCatalogStore.synced`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from common.errors import ConfigError, StorageCorrupt
from common.protocol import JournalEntry
from common.storage import Faults, open_database, write

from .rules import Commit, JournalRow, Stock
SCHEMA = """
CREATE TABLE IF NOT EXISTS stocks (
    name     TEXT PRIMARY KEY,
    price    REAL NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    volume   INTEGER NOT NULL,
    version  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    request_id TEXT PRIMARY KEY,
    seq        INTEGER UNIQUE,
    status     TEXT NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    side       TEXT NOT NULL,
    epoch      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS initial (
    name     TEXT PRIMARY KEY,
    quantity INTEGER NOT NULL,
    volume   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL
);
"""


class SqliteCatalogStore:
    """The catalog's tables in one SQLite file. Use from one thread only.

    :param path: the SQLite file; created if missing.
    :param stocks_csv: the initial stock list, loaded only into an empty table.
    """

    def __init__(self, path: Path, stocks_csv: Path, cluster_id: str = "bazaar", faults: Faults | None = None,
                 distrust_after: tuple[int, int] | None = None) -> None:
        """:param cluster_id: the cluster's id, kept with the data (another cluster's file is refused).
        :param faults: injected storage failures (fault tests only).
        :param distrust_after: ``(seq, journal rowid)`` of the last commit known to
            be on the disk: everything journaled after it is dropped and the
            stocks are computed again from the CSV's figures and the journal
            (the catalog restarted after a failed fsync, :class:`StorageFailed`).
        :raises StorageCorrupt: when the data cannot be trusted (:func:`common.storage.open_database`).
        """
        self.path = path
        self.faults = faults or Faults(None)
        self.db = open_database(path, "catalog", cluster_id, SCHEMA,
                                "./run.sh reset 'catalog!' (the stocks start again from the CSV)").db
        if self.db.execute("SELECT COUNT(*) FROM stocks").fetchone()[0] == 0:
            self._load_csv(stocks_csv)
        if distrust_after is not None:
            self._distrust(*distrust_after)
        self.synced = (self._meta("seq"), self._last_rowid())  # the last commit known to be on the disk

    def load(self) -> tuple[dict[str, Stock], int, int]:
        stocks = {row[0]: Stock(*row) for row in
                  self.db.execute("SELECT name, price, quantity, volume, version FROM stocks")}
        return stocks, self._meta("seq"), self._meta("fence")

    def journaled(self, request_id: str) -> JournalRow | None:
        row = self.db.execute("SELECT status, seq, name, quantity, side, epoch FROM journal WHERE request_id = ?",
                              (request_id,)).fetchone()
        return None if row is None else JournalRow(*row)

    def journal_after(self, after_seq: int, limit: int) -> list[JournalEntry]:
        rows = self.db.execute(
            "SELECT seq, request_id, name, quantity, side FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [JournalEntry(*row) for row in rows]

    def commit(self, change: Commit) -> None:
        def work() -> None:
            db = self.db
            db.executemany("UPDATE stocks SET quantity = ?, volume = ?, version = ? WHERE name = ?",
                           [(s.quantity, s.volume, s.version, s.name) for s in change.stocks])
            db.executemany(
                "INSERT INTO journal(request_id, seq, status, name, quantity, side, epoch) VALUES (?,?,?,?,?,?,?)",
                [(rid, r.seq, r.status, r.name, r.quantity, r.side, r.epoch) for rid, r in change.journal])
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           (("seq", change.seq), ("fence", change.fence)))

        self._write(work)
        self.synced = (change.seq, self._last_rowid())

    def _write(self, work) -> None:
        """Run ``work`` in one transaction (:func:`common.storage.write`)."""
        write(self.db, self.path, self.faults, work)

    def _last_rowid(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM journal").fetchone()[0]

    def _distrust(self, seq: int, rowid: int) -> None:
        """Forget every journal row after ``rowid`` and compute the stocks
        again from their CSV figures and what is left of the journal."""
        initial = self.db.execute("SELECT name, quantity, volume FROM initial").fetchall()
        if not initial:
            raise StorageCorrupt(f"{self.path} has no record of its initial stocks, so what it wrote before a "
                                 f"failed fsync cannot be undone; restore it, or run ./run.sh reset 'catalog!' "
                                 f"(the stocks start again from the CSV)",
                                 str(self.path))

        def work() -> None:
            db = self.db
            db.execute("DELETE FROM journal WHERE rowid > ?", (rowid,))
            applied = {name: (0, 0, 0) for name, _, _ in initial}
            for name, quantity, side in db.execute("SELECT name, quantity, side FROM journal WHERE status = 'ok'"):
                net, volume, trades = applied.get(name, (0, 0, 0))
                applied[name] = (net + (quantity if side == "sell" else -quantity), volume + quantity, trades + 1)
            db.executemany("UPDATE stocks SET quantity = ?, volume = ?, version = ? WHERE name = ?",
                           [(q + applied[n][0], v + applied[n][1], 1 + applied[n][2], n) for n, q, v in initial])
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seq', ?)", (seq,))

        self._write(work)

    def close(self) -> None:
        self.db.close()

    # --- internals --------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else row[0]

    def _load_csv(self, path: Path) -> None:
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except FileNotFoundError:
            raise ConfigError(f"[catalog] stocks_csv {path} does not exist") from None
        stocks = []
        for line, row in enumerate(rows, start=2):
            try:
                name = row["name"].strip()
                price, quantity, volume = float(row["price"]), int(row["quantity"]), int(row["volume"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ConfigError(f"{path}:{line}: expected name,price,quantity,volume") from None
            if not name or not math.isfinite(price) or price < 0 or quantity < 0 or volume < 0:
                raise ConfigError(f"{path}:{line}: name must be set and numbers must be finite and not negative")
            stocks.append((name, price, quantity, volume, 1))
        if not stocks:
            raise ConfigError(f"{path} lists no stocks")
        names = [row[0] for row in stocks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{path} names {', '.join(twice)} more than once")
        def work() -> None:
            self.db.executemany("INSERT INTO stocks(name, price, quantity, volume, version) VALUES (?,?,?,?,?)",
                                stocks)
            self.db.executemany("INSERT INTO initial(name, quantity, volume) VALUES (?,?,?)",
                                [(n, q, v) for n, _, q, v, _ in stocks])
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seq', 0)")

        self._write(work)

