"""The history checker itself must be able to fail: fed a broken final state,
it names the broken promise (no cluster, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.checker import check, report
from harness.cluster import initial_stocks
from harness.history import History, Op


@dataclass
class FakeCluster:
    """Just what check() reads: three replicas' logs, their genesis, the catalog's stocks."""

    logs: dict[int, list[tuple]]
    replicas: int = 3
    http_ports: list[int] = field(default_factory=lambda: [0])
    catalog_off_by: int = 0

    def order_log(self, i: int) -> list[tuple]:
        return self.logs[i]

    def genesis(self, i: int = 1) -> dict[str, int]:
        return dict(initial_stocks())

    def stocks(self) -> dict:
        quantities = dict(initial_stocks())
        for _, _, name, qty, side, status in self.logs[1]:
            if status == "ok":
                quantities[name] += qty if side == "sell" else -qty
        quantities["FishCo"] += self.catalog_off_by
        return {n: (1.0, q, 0, 1) for n, q in quantities.items()}


def history(*ops: Op) -> History:
    h = History()
    for op in ops:
        h.add(op)
    return h


def op(key: str, txn: int | None, status: str = "ok", qty: int = 1, detail: str = "") -> Op:
    return Op(key, "FishCo", qty, "buy", invoked=0.0, client=0, status=status, txn=txn, completed=0.1, detail=detail)


def row(txn: int | None, key: str, qty: int = 1) -> tuple:
    return (txn, key, "FishCo", qty, "buy", "ok" if txn is not None else "not_enough_stock")


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


def test_a_refusal_for_want_of_stock_that_is_not_logged_is_found():
    log = [row(1, "a")]
    refused = op("b", None, status="fail", qty=500, detail="Not enough stock")
    assert "refusals are durable" in promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 1), refused))
    logged = [row(1, "a"), row(None, "b", qty=500)]
    assert promises(FakeCluster({1: logged, 2: logged, 3: logged}), history(op("a", 1), refused)) == set()


def test_a_refusal_the_log_before_it_does_not_justify_is_found():
    log = [row(None, "a", qty=1)]  # 1 FishCo was there to buy
    assert "refusals are right" in promises(FakeCluster({1: log, 2: log, 3: log}),
                                            history(op("a", None, status="fail", detail="Not enough stock")))


def test_a_buy_of_more_than_the_log_leaves_is_found():
    initial = initial_stocks()["FishCo"]
    log = [row(1, "a", qty=initial), row(2, "b", qty=1)]
    assert "one source of truth" in promises(FakeCluster({1: log, 2: log, 3: log}), history(op("a", 1), op("b", 2)))


def test_a_catalog_that_disagrees_with_the_fold_of_the_log_is_found():
    log = [row(1, "a")]
    cluster = FakeCluster({1: log, 2: log, 3: log}, catalog_off_by=1)  # applied twice, or skipped one
    assert "one source of truth" in promises(cluster, history(op("a", 1)))


def test_the_report_shows_the_operation_and_the_faults_around_it():
    h = history(op("a", 1))
    h.note("SIGKILL order-3")
    violations = check(FakeCluster({1: [], 2: [], 3: []}), h, verify_reads=False)
    text = report(h, violations)
    assert "BROKEN: no acknowledged trade lost" in text and "SIGKILL order-3" in text and " a " in text
