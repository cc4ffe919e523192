"""The history checker: did the cluster keep its promises?

After a run, :func:`settle` resolves every ``unknown`` trade by retrying it
with its own Idempotency-Key (the way a client finds out), waits until all
replicas hold the same log and the catalog has applied all of it.
:func:`check` then compares the recorded history with the final state of
every node:

* no acknowledged trade lost: its key is in the log, under the acknowledged
  transaction number, with the same contents, and ``GET /orders/<n>`` says so;
* no duplicate: a key appears at most once in the log;
* no gap: transaction numbers are 1, 2, 3, ... in log order;
* one history: every replica holds the same log;
* refused trades are not carried out, and a refusal for want of stock is
  itself in the log (a retry must get it back) and was right: the fold of the
  log before it held less than the buy asked;
* one source of truth: folding the log from its genesis (``common.book``)
  breaks no rule, and the catalog's table equals that fold.

A broken promise is reported with the smallest slice of history that shows
it: the operations involved and the faults injected around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cluster import Cluster, Http, wait_until
from .history import History, Op, classify


@dataclass
class Violation:
    promise: str
    message: str
    ops: list[Op] = field(default_factory=list)


class HistoryError(AssertionError):
    pass


def settle(cluster: Cluster, history: History, replicas: list[int] | None = None, timeout: float = 60) -> None:
    """Resolve unknown trades by retrying them; wait for identical logs, and
    for the catalog to have applied all of it.

    :param replicas: the replicas expected to hold the final log (all by default).
    """
    http = Http(cluster.http_ports[0], timeout=15, host=cluster.http_host())
    try:
        for op in history.ops:
            if op.status not in ("unknown", "invoked"):
                continue

            def retried(op=op):
                reply = http.post("/orders", {"name": op.name, "quantity": op.quantity, "type": op.side},
                                  headers={"Idempotency-Key": op.key})
                status, txn, detail = classify(reply)
                return None if status == "unknown" else (status, txn, detail)

            status, txn, detail = wait_until(retried, timeout, f"a retry of {op.key} to settle", interval=0.2)
            op.status, op.txn = status, txn
            op.detail = f"{op.detail}; settled by retry: {status} {detail}".strip("; ")
            op.attempts += 1
    finally:
        http.close()
    ids = replicas or list(range(1, cluster.replicas + 1))

    def converged() -> bool:
        logs = [cluster.order_log(i) for i in ids]
        return all(log == logs[0] for log in logs)

    wait_until(converged, timeout, f"replicas {ids} to hold identical logs", interval=0.1)
    last = cluster.last_index(ids[0])
    wait_until(lambda: cluster.catalog_applied() >= last, timeout,
               f"the catalog to apply the log up to {last}", interval=0.1)


@dataclass(frozen=True)
class FinalState:
    """What the nodes hold once the cluster has settled.

    :param logs: replica id -> its trade entries ``(txn, key, name, quantity,
        side, status)`` in log order (``txn`` None for a refusal).
    :param initial: every stock's quantity in the log's genesis.
    :param catalog: the catalog's quantity of every stock.
    """

    logs: dict[int, list[tuple]]
    initial: dict[str, int]
    catalog: dict[str, int]


REFUSED_FOR_STOCK = ("not_enough_stock", "Not enough stock")


def judge(state: FinalState, ops: list) -> list[Violation]:
    """Every promise the final state and the recorded operations must keep.

    Pure (no cluster, no sockets): the process tests (:func:`check`) and the
    deterministic simulator (``tests/sim``) both judge their runs with it.

    :param ops: operations with ``key``, ``status`` (``ok``, ``fail``,
        ``unknown``, ``invoked``), ``txn``, ``name``, ``quantity``, ``side`` and
        ``detail`` (:class:`harness.history.Op` or the simulator's; a refusal
        for want of stock has a ``detail`` that starts with one of
        :data:`REFUSED_FOR_STOCK`).
    """
    ids = sorted(state.logs)
    log = state.logs[ids[0]]
    out: list[Violation] = []

    for i in ids[1:]:
        other = state.logs[i]
        if other != log:
            first = next((k for k, (a, b) in enumerate(zip(log, other)) if a != b), min(len(log), len(other)))
            out.append(Violation("one history", f"replica {i}'s log differs from replica {ids[0]}'s at "
                                                f"position {first}: {log[first:first + 1]} vs {other[first:first + 1]}"))
    accepted = [row for row in log if row[5] == "ok"]
    txns = [row[0] for row in accepted]
    if txns != list(range(1, len(txns) + 1)):
        bad = next(k for k, t in enumerate(txns) if t != k + 1)
        out.append(Violation("no gap", f"transaction numbers break at position {bad}: {txns[max(0, bad - 2):bad + 3]}"))
    by_key: dict[str, list[tuple]] = {}
    for row in log:
        by_key.setdefault(row[1], []).append(row)
    by_op = {op.key: op for op in ops}
    for key, rows in by_key.items():
        if len(rows) > 1:
            out.append(Violation("no duplicate", f"key {key} is logged {len(rows)} times: {rows}",
                                 [by_op[key]] if key in by_op else []))

    for op in ops:
        rows = by_key.get(op.key, [])
        if op.status == "ok":
            if not rows or rows[0][5] != "ok":
                out.append(Violation("no acknowledged trade lost", f"{op.key} was acknowledged as txn {op.txn} "
                                                                    f"but the log holds {rows[:1] or 'nothing'}", [op]))
            elif rows[0][0] != op.txn or rows[0][2:5] != (op.name, op.quantity, op.side):
                out.append(Violation("no acknowledged trade lost", f"{op.key} was acknowledged as txn {op.txn} "
                                                                    f"but the log holds {rows[0]}", [op]))
        elif op.status == "fail":
            if rows and rows[0][5] == "ok":
                out.append(Violation("refusals change nothing", f"{op.key} was refused ({op.detail}) "
                                                                 f"but is logged as carried out: {rows[0]}", [op]))
            elif op.detail.startswith(REFUSED_FOR_STOCK) and not rows:
                out.append(Violation("refusals are durable", f"{op.key} was refused for want of stock, but no "
                                                              "refusal is in the log: a retry could carry it out",
                                     [op]))

    stock = dict(state.initial)
    for txn, key, name, quantity, side, status in log:
        have = stock.get(name)
        if have is None:
            out.append(Violation("one source of truth", f"{key} trades {name}, which the genesis does not list",
                                 [by_op[key]] if key in by_op else []))
            continue
        short = side == "buy" and quantity > have
        if status == "ok" and short:
            out.append(Violation("one source of truth", f"txn {txn} ({key}) buys {quantity} {name}, but the log "
                                                        f"before it leaves {have}", [by_op[key]] if key in by_op else []))
        elif status != "ok" and not short:
            out.append(Violation("refusals are right", f"{key} was refused ({status}), but the log before it "
                                                       f"leaves {have} {name} for a {side} of {quantity}",
                                 [by_op[key]] if key in by_op else []))
        if status == "ok":
            stock[name] = have + (quantity if side == "sell" else -quantity)
    for name, expect in stock.items():
        if state.catalog.get(name) != expect:
            out.append(Violation("one source of truth", f"{name}: the catalog holds {state.catalog.get(name)}, "
                                                        f"the fold of the log {expect}"))
    return out


def check(cluster: Cluster, history: History, replicas: list[int] | None = None,
          verify_reads: bool = True) -> list[Violation]:
    """Every promise the final state and the history must satisfy: :func:`judge`
    on what the databases hold, and (``verify_reads``) every acknowledged
    trade read back through the HTTP API."""
    ids = replicas or list(range(1, cluster.replicas + 1))
    state = FinalState(logs={i: cluster.order_log(i) for i in ids}, initial=cluster.genesis(ids[0]),
                       catalog={name: row[1] for name, row in cluster.stocks().items()})
    out = judge(state, history.ops)
    if verify_reads:
        http = Http(cluster.http_ports[0], timeout=15, host=cluster.http_host())
        try:
            for op in history.ops:
                if op.status != "ok":
                    continue
                reply = wait_until(lambda op=op: _read(http, op.txn), 30, f"GET /orders/{op.txn}")
                expect = {"transaction_number": op.txn, "name": op.name, "quantity": op.quantity, "type": op.side}
                if reply != expect:
                    out.append(Violation("reads agree", f"GET /orders/{op.txn} answered {reply}, "
                                                        f"acknowledged {expect}", [op]))
        finally:
            http.close()
    return out


def _read(http: Http, txn: int):
    reply = http.get(f"/orders/{txn}")
    if reply.status == 503:
        return None
    return reply.data if reply.status == 200 else reply.body


def report(history: History, violations: list[Violation], window_s: float = 1.0) -> str:
    """Each violation with the operations involved and the faults around them."""
    lines = []
    for v in violations:
        lines.append(f"BROKEN: {v.promise}: {v.message}")
        for op in v.ops:
            lines.append("  op     " + op.line())
            body = {"name": op.name, "quantity": op.quantity, "type": op.side}
            for x in history.requests:
                if x.path == "/orders" and x.body == body and op.invoked - 0.01 <= x.start <= (op.completed or x.start):
                    lines.append(f"  http   {x.start:9.3f} {x.end:9.3f} {x.method} {x.path} -> {x.status} {x.reply}")
            lo, hi = op.invoked - window_s, (op.completed or op.invoked) + window_s
            for t, text in history.events:
                if lo <= t <= hi:
                    lines.append(f"  fault  {t:9.3f} {text}")
    counts = {s: len(history.by_status(s)) for s in ("ok", "fail", "unknown")}
    lines.append(f"history: {len(history.ops)} trades {counts}, {len(history.requests)} HTTP exchanges; faults: "
                 + "; ".join(f"{t:.3f} {text}" for t, text in history.events))
    return "\n".join(lines)


def assert_promises_kept(cluster: Cluster, history: History, replicas: list[int] | None = None) -> None:
    """Settle, check, and fail with a readable report if anything broke."""
    settle(cluster, history, replicas)
    violations = check(cluster, history, replicas)
    if violations:
        raise HistoryError(report(history, violations))
