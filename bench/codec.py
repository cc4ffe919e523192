"""What the codec costs per message on the trade path, against bare msgpack.

    .venv/bin/python -m bench.codec [-n 20000] [--repeat 5]

For each message a trade sends (place_trade, append_entries, append_reply,
trade_done, the catalog's read_committed and committed_entries, stock_changes) and the empty
append_entries of a heartbeat, it times :func:`common.codec.encode` and
:func:`common.codec.decode`, and, as the baseline, ``msgpack.packb`` and
``msgpack.unpackb`` of the very map the codec puts on the wire (the floor: no
dataclass, no validation). Each figure is the best of ``--repeat`` runs of
``-n`` calls, in microseconds per call, so a busy machine inflates it less;
the ratio column is codec / bare msgpack, measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import msgpack

from common import codec
from common.protocol import (
    AppendEntries, AppendReply, CommittedEntries, LogEntry, Message, PlaceTrade, ReadCommitted, StockChanged,
    StockChanges, StockInfo, TradeDone, TradeRecord,
)

RID = "5f0c6d4b2a9e4c37b1f8d2e6a0c3b9f1"  # an Idempotency-Key as the benchmark client makes them


def trade_path() -> list[Message]:
    """One trade's messages, as the nodes send them."""
    stock = StockInfo("GameStart", 15.99, 97, 3, 10, 10)
    entry = LogEntry(10, 2, TradeRecord(request_id=RID, name="GameStart", quantity=3, side="buy", txn=9))
    return [
        PlaceTrade(RID, "GameStart", 3, "buy", deadline_ms=1_796_000_000_000),
        AppendEntries(term=2, leader=3, prev_index=9, prev_term=2, entries=[entry], commit=9, probe=7),
        AppendEntries(term=2, leader=3, prev_index=10, prev_term=2, entries=[], commit=10, probe=8),
        AppendReply(term=2, follower=1, success=True, match_index=10, hint=10, probe=7, last=10),
        TradeDone(txn=9, name="GameStart", quantity=3, side="buy", index=10, stock=stock),
        ReadCommitted(after=9, limit=1000, wait_ms=300),
        CommittedEntries(entries=[entry], commit=10, leader=3),
        StockChanges(prev=9, index=10, changes=[StockChanged("GameStart", 15.99, 97, 10)]),
    ]


def per_call_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    """The best of ``repeat`` timings of ``n`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def measure(msg: Message, n: int, repeat: int) -> dict[str, float]:
    frame = codec.encode(msg)
    body = msgpack.unpackb(frame, raw=False)
    return {
        "bytes": len(frame),
        "encode": per_call_us(lambda: codec.encode(msg), n, repeat),
        "packb": per_call_us(lambda: msgpack.packb(body), n, repeat),
        "decode": per_call_us(lambda: codec.decode(frame), n, repeat),
        "unpackb": per_call_us(lambda: msgpack.unpackb(frame, raw=False), n, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="calls per timing (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure; the best is kept (default 5)")
    args = parser.parse_args()
    print(f"best of {args.repeat} x {args.n} calls; microseconds per call\n")
    print("| message | bytes | encode | bare packb | ratio | decode | bare unpackb | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = {"encode": 0.0, "packb": 0.0, "decode": 0.0, "unpackb": 0.0}
    for msg in trade_path():
        got = measure(msg, args.n, args.repeat)
        for key in totals:
            totals[key] += got[key]
        name = msg.MSG + (" (heartbeat)" if isinstance(msg, AppendEntries) and not msg.entries else "")
        print(f"| {name} | {got['bytes']} | {got['encode']:.2f} | {got['packb']:.2f} | "
              f"{got['encode'] / got['packb']:.1f} | {got['decode']:.2f} | {got['unpackb']:.2f} | "
              f"{got['decode'] / got['unpackb']:.1f} |")
    print(f"| all of them | | {totals['encode']:.2f} | {totals['packb']:.2f} | "
          f"{totals['encode'] / totals['packb']:.1f} | {totals['decode']:.2f} | {totals['unpackb']:.2f} | "
          f"{totals['decode'] / totals['unpackb']:.1f} |")


if __name__ == "__main__":
    main()
