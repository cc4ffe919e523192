"""A long history, written straight into a cluster's databases before it starts.

Building a log of 200,000 trades through the HTTP API would take many
minutes; :func:`seed_history` writes the same thing in seconds, with the
nodes' own stores (so the files are exactly what the nodes would have
written): the catalog applies ``trades`` trades in batches (buys and sells of
one share, alternating over the stocks, so no stock runs out) and every
replica's log holds a no-op of term 1 followed by those trades, in the
catalog's order, with transaction numbers 1, 2, 3, ... All replicas voted for
the highest id in term 1. The history checker then finds the seeded trades
in the final state as it finds any other.
"""

from __future__ import annotations

from pathlib import Path

from catalog.rules import Catalog
from catalog.store import SqliteCatalogStore
from common.protocol import LogEntry, TradeItem, TradeRecord
from order.store import SqliteLog

CHUNK = 20_000


def seed_history(data_dir: Path, cluster_id: str, stocks_csv: Path, replicas: list[int], trades: int,
                 stocks: tuple[str, ...] = ("GameStart", "FishCo", "BoarCo", "MenhirCo")) -> int:
    """Write ``trades`` trades into the catalog's and every replica's database.

    :returns: the last log index (the no-op plus the trades).
    """
    store = SqliteCatalogStore(data_dir / "catalog.sqlite3", stocks_csv, cluster_id=cluster_id)
    catalog = Catalog(store)
    logs = [SqliteLog(data_dir / f"order-{i}.sqlite3", node=f"order-{i}", cluster_id=cluster_id) for i in replicas]
    try:
        for log in logs:
            log.save_hard_state(1, max(replicas))
            log.append([LogEntry(index=1, term=1)])
            log.clear_blank()
        done = 0
        while done < trades:
            items = [TradeItem(f"seed-{k}", stocks[k % len(stocks)], 1, "buy" if (k // len(stocks)) % 2 else "sell")
                     for k in range(done + 1, min(trades, done + CHUNK) + 1)]
            applied = catalog.apply(1, items)
            entries = [LogEntry(index=1 + done + n + 1, term=1, trade=TradeRecord(
                txn=done + n + 1, request_id=item.request_id, name=item.name, quantity=item.quantity,
                side=item.side, seq=outcome.seq)) for n, (item, outcome) in enumerate(zip(items, applied.outcomes))]
            for log in logs:
                log.append(entries)
            done += len(items)
        return 1 + trades
    finally:
        store.close()
        for log in logs:
            log.close()
