"""The catalog's durable state in SQLite.

Tables::

    stocks(name PK, price, quantity, volume, version)
    journal(request_id PK, seq UNIQUE, status, name, quantity, side, epoch)
    meta(key PK, value)      -- 'seq': last change; 'fence': highest leader epoch

Every trade the catalog settles, applied or refused, is journaled under its
request id in the same transaction as the stock change, so a retried request
gets its first result back and changes nothing. Applied trades also take the
next change number ``seq``; the order leader uses the journal to find trades
the catalog applied but the order log lacks (see docs/REPLICATION.md).

SQLite runs in WAL mode with ``synchronous=FULL``: a batch is acknowledged only
after its commit reached the disk, so it survives a power cut, not just a
killed process. One commit covers a whole batch (group commit).
"""

from __future__ import annotations

import csv
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from common.protocol import JournalEntry, StockInfo, TradeItem, TradeOutcome, TradeStatus

from .ledger import Stock, settle

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


class StaleEpoch(Exception):
    """A deposed leader tried to trade; ``fence`` is the epoch now required."""

    def __init__(self, fence: int) -> None:
        super().__init__(f"epoch is older than the fence {fence}")
        self.fence = fence


@dataclass
class Applied:
    """What one batch did: the outcome per trade, and the stocks it changed
    (with their change numbers) for the bus."""

    outcomes: list[TradeOutcome]
    changes: list[tuple[Stock, int]]


class CatalogStore:
    """The stock table, journal and fence, with the stocks mirrored in memory
    for lookups. Use from one thread only.

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
        self.stocks: dict[str, Stock] = {
            row[0]: Stock(*row) for row in self.db.execute("SELECT name, price, quantity, volume, version FROM stocks")
        }
        self.seq = self._meta("seq")
        self.fence = self._meta("fence")

    # --- reads ------------------------------------------------------------

    def lookup(self, name: str) -> StockInfo | None:
        stock = self.stocks.get(name)
        if stock is None:
            return None
        return to_info(stock, self.seq)

    def journal_after(self, after_seq: int, limit: int) -> tuple[list[JournalEntry], bool]:
        """Applied trades with ``seq > after_seq``, oldest first.

        :returns: at most ``limit`` entries, and whether more follow.
        """
        rows = self.db.execute(
            "SELECT seq, request_id, name, quantity, side FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit + 1),
        ).fetchall()
        return [JournalEntry(*row) for row in rows[:limit]], len(rows) > limit

    # --- writes -----------------------------------------------------------

    def raise_fence(self, epoch: int) -> None:
        """Refuse trades from epochs below ``epoch`` from now on (durably).

        :raises StaleEpoch: if a higher fence is already up.
        """
        if epoch < self.fence:
            raise StaleEpoch(self.fence)
        if epoch > self.fence:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('fence', ?)", (epoch,))
            self.fence = epoch

    def apply(self, epoch: int, trades: list[TradeItem]) -> Applied:
        """Settle a batch of trades in one transaction, in order.

        :raises StaleEpoch: if ``epoch`` is below the fence (nothing changes).
        """
        if epoch < self.fence:
            raise StaleEpoch(self.fence)
        outcomes: list[TradeOutcome] = []
        changed: dict[str, Stock] = {}
        changes: list[tuple[Stock, int]] = []
        seq = self.seq
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if epoch > self.fence:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('fence', ?)", (epoch,))
            for item in trades:
                row = db.execute(
                    "SELECT status, seq, name, quantity, side FROM journal WHERE request_id = ?", (item.request_id,)
                ).fetchone()
                if row is not None:
                    outcomes.append(_replay(item, row))
                    continue
                current = changed.get(item.name) or self.stocks.get(item.name)
                status, after = settle(current, item.quantity, item.side)
                entry_seq = None
                if after is not None:
                    seq += 1
                    entry_seq = seq
                    changed[item.name] = after
                    changes.append((after, seq))
                    db.execute(
                        "UPDATE stocks SET quantity = ?, volume = ?, version = ? WHERE name = ?",
                        (after.quantity, after.volume, after.version, after.name),
                    )
                db.execute(
                    "INSERT INTO journal(request_id, seq, status, name, quantity, side, epoch) VALUES (?,?,?,?,?,?,?)",
                    (item.request_id, entry_seq, status.value, item.name, item.quantity, item.side, epoch),
                )
                outcomes.append(TradeOutcome(
                    request_id=item.request_id, status=status.value, seq=entry_seq,
                    stock=None if after is None else to_info(after, seq),
                ))
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seq', ?)", (seq,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.stocks.update(changed)
        self.seq = seq
        self.fence = max(self.fence, epoch)
        return Applied(outcomes, changes)

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


def to_info(stock: Stock, seq: int) -> StockInfo:
    return StockInfo(
        name=stock.name, price=stock.price, quantity=stock.quantity,
        volume=stock.volume, version=stock.version, seq=seq,
    )


def _replay(item: TradeItem, row: tuple) -> TradeOutcome:
    status, seq, name, quantity, side = row
    if (name, quantity, side) != (item.name, item.quantity, item.side):
        return TradeOutcome(request_id=item.request_id, status=TradeStatus.KEY_REUSED.value)
    return TradeOutcome(request_id=item.request_id, status=status, seq=seq)
