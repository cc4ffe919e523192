"""The history checker itself must be able to fail: fed a broken final state,
it names the broken promise (no cluster, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.checker import check, report
from harness.cluster import initial_stocks
from harness.history import History, Op


@dataclass
class FakeCluster:
    """Just what check() reads: three replicas' logs, stocks, journal."""

    logs: dict[int, list[tuple]]
    replicas: int = 3
    http_ports: list[int] = field(default_factory=lambda: [0])

    def order_log(self, i: int) -> list[tuple]:
        return self.logs[i]

    def stocks(self) -> dict:
        quantities = dict(initial_stocks())
        for _, _, name, qty, side in self.logs[1]:
            quantities[name] += qty if side == "sell" else -qty
        return {n: (1.0, q, 0, 1) for n, q in quantities.items()}

    def journal(self) -> list[tuple]:
        return [(k + 1, *row[1:]) for k, row in enumerate(self.logs[1])]


def history(*ops: Op) -> History:
    h = History()
    for op in ops:
        h.add(op)
    return h


def op(key: str, txn: int | None, status: str = "ok", qty: int = 1) -> Op:
    return Op(key, "FishCo", qty, "buy", invoked=0.0, client=0, status=status, txn=txn, completed=0.1)


def row(txn: int, key: str, qty: int = 1) -> tuple:
    return (txn, key, "FishCo", qty, "buy")


def promises(cluster, h) -> set[str]:
    return {v.promise for v in check(cluster, h, verify_reads=False)}


def test_a_good_history_passes():
    log = [row(1, "a"), row(2, "b")]
    assert promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 1), op("b", 2))) == set()


def test_a_lost_acknowledged_trade_is_found():
    log = [row(1, "a")]
    assert "no acknowledged trade lost" in promises(FakeCluster({1: log, 2: log, 3: log}),
                                                    history(op("a", 1), op("b", 2)))


def test_an_acknowledged_trade_whose_number_changed_is_found():
    log = [row(1, "b"), row(2, "a")]
    assert "no acknowledged trade lost" in promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 1)))


def test_a_duplicate_and_a_gap_are_found():
    log = [row(1, "a"), row(3, "a")]
    found = promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 1)))
    assert {"no duplicate", "no gap"} <= found


def test_numbers_that_start_at_zero_are_a_gap():
    log = [row(0, "a"), row(1, "b")]
    assert "no gap" in promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 0), op("b", 1)))


def test_replicas_that_disagree_are_found():
    log = [row(1, "a")]
    assert "one history" in promises(FakeCluster({1: log, 2: log, 3: [row(1, "z")]}), history(op("a", 1)))


def test_a_refused_trade_in_the_log_is_found():
    log = [row(1, "a")]
    assert "refusals change nothing" in promises(FakeCluster({1: log, 2: log, 3: log}),
                                                 history(op("a", None, status="fail")))


def test_a_catalog_that_disagrees_with_the_log_is_found():
    log = [row(1, "a")]
    cluster = FakeCluster({1: log, 2: log, 3: log})
    cluster.journal = lambda: []  # the catalog never applied it
    assert "conservation" in promises(cluster, history(op("a", 1)))


def test_the_report_shows_the_operation_and_the_faults_around_it():
    h = history(op("a", 1))
    h.note("SIGKILL order-3")
    violations = check(FakeCluster({1: [], 2: [], 3: []}), h, verify_reads=False)
    text = report(h, violations)
    assert "BROKEN: no acknowledged trade lost" in text and "SIGKILL order-3" in text and " a " in text
