"""Deterministic simulation of the order replicas, the catalog and clients.

Thousands of seeded fault schedules run in CI-friendly time; each one checks
the promises after every simulated event. The mutation tests below prove the
simulator can fail: with the vote's log check, the blank rules, the wait
for a refusal's commit, or the catalog's idempotence by index removed, some
seed breaks a promise.
"""

from __future__ import annotations

import os
from dataclasses import replace

from catalog.projection import Projection
from common.book import Book
from common.protocol import Error, ErrorCode
from order.desk import NOT_ENOUGH_STOCK, Desk, ToClient
from order.raft import Raft
from order.replica import Replica

from .scenario import run
from .world import Violation, World

SEEDS = int(os.environ.get("BAZAAR_SIM_SEEDS", "300"))


def test_seeded_fault_schedules_keep_every_promise():
    failures = []
    for seed in range(SEEDS):
        try:
            run(seed)
        except Violation as exc:
            failures.append(f"{exc}  (replay: python -m tests.sim --seed {seed} --trace)")
    assert not failures, "\n".join(failures[:10])


def test_a_run_is_a_pure_function_of_its_seed():
    first = run(7, trace=True)
    second = run(7, trace=True)
    assert first.trace == second.trace
    assert len(first.trace) > 50


def test_the_simulation_exercises_faults_and_trades():
    world = run(3, trace=True)
    text = "\n".join(world.trace)
    assert "crash" in text and "leader" in text
    statuses = {op.status for op in world.ops.values()}
    assert "ok" in statuses
    assert len(world.leaders) >= 2  # at least one failover happened
    assert world.read_answers >= 10  # acknowledged orders read back, at followers too


def test_a_follower_that_answers_not_found_for_an_order_is_caught(monkeypatch):
    def not_found(self, txn):
        return Error(ErrorCode.ORDER_NOT_FOUND, "order not found")

    monkeypatch.setattr(Replica, "committed_order", not_found)
    assert _first_failing_seed() is not None


def _first_failing_seed(limit: int = 200) -> str | None:
    for seed in range(limit):
        try:
            run(seed)
        except Violation as exc:
            return str(exc)
    return None


def test_without_the_vote_log_check_a_promise_breaks(monkeypatch):
    monkeypatch.setattr(Raft, "_log_ok", lambda self, last_term, last_index: True)
    assert _first_failing_seed() is not None


def test_answering_a_refusal_before_its_entry_commits_breaks_a_promise(monkeypatch):
    """A refusal decided on the leader's uncommitted entries, answered at
    once: if those entries are lost, so is the refusal, and a retry may be
    carried out after the client was told it was refused."""
    decide = Desk._decide

    def refuse_at_once(self, waiter, now):
        out = decide(self, waiter, now)
        entry = self.log.by_request(waiter.msg.request_id)
        if (entry is not None and entry.index > self.raft.commit and entry.trade.txn is None
                and waiter in self.waiting.get(entry.index, [])):
            self.waiting[entry.index].remove(waiter)
            out.append(ToClient(waiter.ref, NOT_ENOUGH_STOCK))
        return out

    monkeypatch.setattr(Desk, "_decide", refuse_at_once)
    assert _first_failing_seed() is not None


def _trusting_apply_all(self, entries):
    """A catalog's fold that trusts whatever arrives: no index check, no
    rule check, each entry's change applied as it comes."""
    changed = {}
    for entry in entries:
        if entry.genesis is not None:
            if not self.started:
                changed.update((s.name, s) for s in self.apply(entry))
            continue
        t = entry.trade
        if t is not None and t.txn is not None and self.get(t.name) is not None:
            stock = self.get(t.name)
            after = replace(stock, quantity=stock.quantity + (t.quantity if t.side == "sell" else -t.quantity),
                            volume=stock.volume + t.quantity, version=entry.index)
            self._put(after)
            changed[t.name] = after
            self.last_txn = max(self.last_txn, t.txn)
        self.applied = max(self.applied, entry.index)
    return list(changed.values())


def test_a_catalog_that_applies_an_entry_twice_is_caught(monkeypatch):
    """Without its idempotence by index, a catalog applies again the entries
    that a duplicated or resent page carries."""
    monkeypatch.setattr(Projection, "_fresh", lambda self, entries: list(entries))
    monkeypatch.setattr(Book, "apply_all", _trusting_apply_all)
    assert _first_failing_seed() is not None


def test_a_catalog_that_skips_an_index_is_caught(monkeypatch):
    """Without its gap check, a catalog that lost its last writes (a power
    cut) and then gets a page it had fetched before applies that page,
    skipping the entries in between."""
    monkeypatch.setattr(Projection, "_fresh",
                        lambda self, entries: [e for e in entries if e.index > self.book.applied])
    monkeypatch.setattr(Book, "apply_all", _trusting_apply_all)
    assert _first_failing_seed() is not None


def test_without_the_blank_rules_a_lost_disk_breaks_a_promise(monkeypatch):
    """A replica that lost its disk has forgotten its votes and its log; if it
    voted and campaigned as before, committed entries would be lost."""
    def forgets_nothing(self, now):
        last = self.started if self.last_contact is None else max(self.started, self.last_contact)
        return now - last >= self.t.election_s

    monkeypatch.setattr(Raft, "_may_vote", lambda self, candidate_blank: self.storage_ok)
    monkeypatch.setattr(Raft, "_may_campaign", lambda self: self.storage_ok)
    monkeypatch.setattr(Raft, "_silent_for_window", forgets_nothing)
    assert _first_failing_seed() is not None


def test_a_wiped_follower_rejoins_catches_up_and_votes_again():
    world = World(seed=5)
    for k in range(20):
        world._schedule(0.3 + k * 0.02, "call", lambda k=k: world.place(f"a{k}", "FishCo", 1, "buy"))
    world.run_until(1.0)
    leader = next(i for i, n in world.nodes.items() if n and n.raft.is_leader())
    follower = next(i for i in world.ids if i != leader)
    world.wipe(follower)
    world.run_until(world.now + 0.1)
    world.restart(follower)
    assert world.nodes[follower].raft.blank
    world.run_until(world.now + 1.0)
    rejoined = world.nodes[follower].raft
    assert not rejoined.blank and rejoined.voted_for == leader  # its vote of this term is its leader's
    assert world.logs[follower].entries(1, 999) == world.logs[leader].entries(1, world.logs[follower].last_index())
    world.crash(leader)  # and now it can help elect the next one
    world.run_until(world.now + 1.0)
    assert any(n is not None and n.raft.is_leader() for n in world.nodes.values())
    world.settle()


def test_kill_the_leader_restart_it_kill_the_new_leader():
    """The case the public implementations fail, spelled out step by step."""
    world = World(seed=42)
    for k in range(20):
        world._schedule(0.3 + k * 0.05, "call", lambda k=k: world.place(f"a{k}", "FishCo", 1, "buy"))
    world.run_until(0.8)
    first = next(i for i, n in world.nodes.items() if n and n.raft.is_leader())
    world.crash(first)
    for k in range(20):
        world._schedule(world.now + 0.05 + k * 0.02, "call", lambda k=k: world.place(f"b{k}", "FishCo", 1, "sell"))
    world.run_until(world.now + 0.8)
    second = next(i for i, n in world.nodes.items() if n and n.raft.is_leader())
    assert second != first
    world.restart(first)
    world.run_until(world.now + 0.01)  # before it can catch up
    world.crash(second)
    for k in range(10):
        world._schedule(world.now + 0.05 + k * 0.02, "call", lambda k=k: world.place(f"c{k}", "BoarCo", 1, "buy"))
    world.run_until(world.now + 1.0)
    world.settle()
    assert all(op.status == "ok" for op in world.ops.values())
