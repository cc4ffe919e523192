"""The catalog's table in SQLite: the :class:`catalog.projection.CatalogStore`
of the real catalog node.

Tables::

    stocks(name PK, price, quantity, volume, version)
    meta(key PK, value)   -- 'applied' and 'last_txn': how far the table folds the log;
                             'cluster', 'node' and 'schema': whose data this is

The table and the index it reaches are one transaction, so whatever the
disk holds is the fold of the log up to the index it says.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives a
killed process, and a power cut may take back the last few commits (never a
part of one). Nothing rests on them: no trade waits for the catalog, and a
catalog that comes back behind fetches the entries again from the order
replicas. ``FULL`` would buy nothing but an fsync per page.

Storage failures come out as the storage errors of :mod:`common.errors`: a
full disk (:class:`StorageFull`) writes nothing; a failed write
(:class:`StorageFailed`) makes the catalog restart from what its file holds.
"""

from __future__ import annotations

from pathlib import Path

from common.book import Book, Stock
from common.storage import Faults, open_database, write

SCHEMA = """
CREATE TABLE IF NOT EXISTS stocks (
    name     TEXT PRIMARY KEY,
    price    REAL NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0),
    volume   INTEGER NOT NULL,
    version  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL
);
"""

RESET_HINT = "./run.sh reset catalog (it rebuilds its table from the order log, losing nothing)"


class SqliteCatalogStore:
    """The catalog's table in one SQLite file. Use from one thread only.

    :param path: the SQLite file; created (empty: the catalog fetches the
        whole log) if missing.
    """

    def __init__(self, path: Path, cluster_id: str = "bazaar", faults: Faults | None = None) -> None:
        """:param cluster_id: the cluster's id, kept with the data (another cluster's file is refused).
        :param faults: injected storage failures (fault tests only).
        :raises StorageCorrupt: when the data cannot be trusted (:func:`common.storage.open_database`).
        """
        self.path = path
        self.faults = faults or Faults(None)
        self.db = open_database(path, "catalog", cluster_id, SCHEMA, RESET_HINT, synchronous="NORMAL",
                                old_hint=f"Run {RESET_HINT}").db

    def load(self) -> Book:
        stocks = {row[0]: Stock(*row) for row in
                  self.db.execute("SELECT name, price, quantity, volume, version FROM stocks")}
        return Book(stocks, applied=self._meta("applied"), last_txn=self._meta("last_txn"))

    def commit(self, stocks: list[Stock], applied: int, last_txn: int) -> None:
        def work() -> None:
            self.db.executemany("INSERT OR REPLACE INTO stocks(name, price, quantity, volume, version) "
                                "VALUES (?,?,?,?,?)",
                                [(s.name, s.price, s.quantity, s.volume, s.version) for s in stocks])
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                (("applied", applied), ("last_txn", last_txn)))

        write(self.db, self.path, self.faults, work)

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else row[0]
