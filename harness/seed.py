"""A long history, written straight into a cluster's databases before it starts.

Building a log of 200,000 trades through the HTTP API would take many
minutes; :func:`seed_history` writes the same thing in seconds, with the
replicas' own store (so the files are exactly what the nodes would have
written): every replica's log holds the genesis (the CSV's stocks) in term
1, followed by ``trades`` trades (buys and sells of one share, alternating
over the stocks, so no stock runs out) with transaction numbers 1, 2, 3, ...,
each replica's book folded over all of it. All replicas voted for the
highest id in term 1. The catalog is not seeded: it starts blank and
rebuilds its table from the log, as after ``./run.sh reset catalog``
(``catalog=True`` seeds it too, for a cluster that must start caught up).
The history checker then finds the seeded trades in the final state as it
finds any other.
"""

from __future__ import annotations

from pathlib import Path

from catalog.store import SqliteCatalogStore
from common.book import Book
from common.config import load_stocks
from common.protocol import LogEntry, StockRow, TradeRecord
from order.store import SqliteLog

CHUNK = 20_000


def seed_history(data_dir: Path, cluster_id: str, stocks_csv: Path, replicas: list[int], trades: int,
                 stocks: tuple[str, ...] = ("GameStart", "FishCo", "BoarCo", "MenhirCo"),
                 catalog: bool = False) -> int:
    """Write ``trades`` trades into every replica's database (and the catalog's, if asked).

    :returns: the last log index (the genesis plus the trades).
    """
    logs = [SqliteLog(data_dir / f"order-{i}.sqlite3", node=f"order-{i}", cluster_id=cluster_id) for i in replicas]
    book = Book()
    try:
        genesis = LogEntry(index=1, term=1, genesis=[StockRow(*row) for row in load_stocks(stocks_csv)])
        book.apply(genesis)
        for log in logs:
            log.save_hard_state(1, max(replicas))
            log.append([genesis])
            log.clear_blank()
        done = 0
        while done < trades:
            entries = [LogEntry(index=1 + k, term=1, trade=TradeRecord(
                request_id=f"seed-{k}", name=stocks[k % len(stocks)], quantity=1,
                side="buy" if (k // len(stocks)) % 2 else "sell", txn=k))
                for k in range(done + 1, min(trades, done + CHUNK) + 1)]
            for entry in entries:
                book.apply(entry)
            for log in logs:
                log.save_book(book)
                book.dirty.update(book.stocks)  # every log writes the whole book
                log.append(entries)
            done += len(entries)
        for log in logs:
            log.save_book(book)
            log.save_hard_state(1, max(replicas))  # the book's last changes go with this write
        if catalog:
            store = SqliteCatalogStore(data_dir / "catalog.sqlite3", cluster_id=cluster_id)
            try:
                store.commit(list(book.stocks.values()), book.applied, book.last_txn)
            finally:
                store.close()
        return 1 + trades
    finally:
        for log in logs:
            log.close()
