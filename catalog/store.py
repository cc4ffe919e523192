"""The catalog's durable state in SQLite: the :class:`catalog.rules.CatalogStore`
of the real catalog node.

Tables::

    stocks(name PK, price, quantity, volume, version)
    journal(request_id PK, seq UNIQUE, status, name, quantity, side, epoch)
    meta(key PK, value)      -- 'seq': last change; 'fence': highest leader epoch

The rules that fill them (journal, replay, change numbers, fence) live in
:mod:`catalog.rules`; this module only reads and writes rows. One
:meth:`SqliteCatalogStore.commit` is one transaction (a whole batch: group
commit). SQLite runs in WAL mode with ``synchronous=FULL``: a batch is
acknowledged only after its commit reached the disk, so it survives a power
cut, not just a killed process.
"""

from __future__ import annotations

import csv
import math
import sqlite3
from pathlib import Path

from common.errors import ConfigError
from common.protocol import JournalEntry

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
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class SqliteCatalogStore:
    """The catalog's tables in one SQLite file. Use from one thread only.

    :param path: the SQLite file; created if missing.
    :param stocks_csv: the initial stock list, loaded only into an empty table.
    """

    def __init__(self, path: Path, stocks_csv: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        if self.db.execute("SELECT COUNT(*) FROM stocks").fetchone()[0] == 0:
            self._load_csv(stocks_csv)

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
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("UPDATE stocks SET quantity = ?, volume = ?, version = ? WHERE name = ?",
                           [(s.quantity, s.volume, s.version, s.name) for s in change.stocks])
            db.executemany(
                "INSERT INTO journal(request_id, seq, status, name, quantity, side, epoch) VALUES (?,?,?,?,?,?,?)",
                [(rid, r.seq, r.status, r.name, r.quantity, r.side, r.epoch) for rid, r in change.journal])
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           (("seq", change.seq), ("fence", change.fence)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO stocks(name, price, quantity, volume, version) VALUES (?,?,?,?,?)", stocks)
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seq', 0)")
        self.db.execute("COMMIT")

