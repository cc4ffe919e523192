"""The order replicas' state machines, driven by hand: no sockets, a fake clock.

A tiny synchronous network delivers every output at once (in order), so each
test spells out one rule of order/raft.py, order/desk.py or order/replica.py.
"""

from __future__ import annotations

from common.book import fold
from common.protocol import (
    AppendEntries, AppendReply, CommittedEntries, Error, GetOrder, LogEntry, Lookup, OrderInfo, PlaceTrade,
    ReadCommitted, ReplicaRole, StockInfo, StockRow, TradeDone, TradeRecord, VoteReply, VoteRequest,
)
from order.desk import ToClient
from order.log import MemoryLog
from order.raft import Flush, Role, SendPeer, Timing
from order.replica import Counters, Replica

TIMING = Timing(heartbeat_s=0.1, election_s=0.3, rank_step_s=0.15)
STOCKS = {"GameStart": 100, "FishCo": 100, "BoarCo": 100}
GENESIS = [StockRow(name, 10.0, quantity, 0) for name, quantity in STOCKS.items()]


def replica(i: int, ids: list[int], log: MemoryLog, now: float) -> Replica:
    return Replica(i, [p for p in ids if p != i], log, TIMING, now, genesis=lambda: list(GENESIS))


class Net:
    """Three replicas; outputs are delivered synchronously."""

    def __init__(self, ids=(1, 2, 3), logs=None) -> None:
        self.now = 0.0
        self.ids = list(ids)
        self.logs = logs or {i: MemoryLog() for i in self.ids}
        self.nodes = {i: replica(i, self.ids, self.logs[i], 0.0) for i in self.ids}
        self.down: set[int] = set()
        self.replies: list[tuple[object, object]] = []

    def run(self, i: int, outputs: list) -> None:
        queue = [(i, o) for o in outputs]
        while queue:
            src, out = queue.pop(0)
            if isinstance(out, SendPeer):
                if out.peer not in self.down and src not in self.down:
                    node = self.nodes[out.peer]  # as the shell does: a read, then what it staged leaves
                    queue += [(out.peer, o) for o in [*node.on_peer(out.msg, self.now), *node.replicate(self.now)]]
            elif isinstance(out, Flush):
                self.logs[src].flush()
                queue += [(src, o) for o in self.nodes[src].flushed(self.now)]
            elif isinstance(out, ToClient):
                self.replies.append((out.ref, out.msg))

    def advance(self, seconds: float, step: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 6)
            for i in self.ids:
                if i not in self.down:
                    self.run(i, self.nodes[i].tick(self.now))

    def leader(self) -> int | None:
        leaders = [i for i in self.ids if i not in self.down and self.nodes[i].raft.role is Role.LEADER]
        assert len(leaders) <= 1
        return leaders[0] if leaders else None

    def place(self, i: int, ref: str, name="FishCo", qty=1, side="buy", expires: float | None = None) -> None:
        """A frontend's trade, then the end of the shell's read (what it staged leaves)."""
        self.run(i, self.nodes[i].on_client(ref, PlaceTrade(ref, name, qty, side), self.now, expires))
        self.run(i, self.nodes[i].replicate(self.now))

    def ask(self, i: int, ref: str, msg) -> None:
        self.run(i, self.nodes[i].on_client(ref, msg, self.now))

    def reply(self, ref: str):
        found = [m for r, m in self.replies if r == ref]
        return found[-1] if found else None


def elected() -> Net:
    net = Net()
    net.advance(1.0)
    assert net.leader() is not None
    return net


def test_the_highest_id_is_elected_when_all_start_together():
    net = elected()
    assert net.leader() == 3
    assert {net.nodes[i].raft.leader for i in (1, 2)} == {3}
    assert all(net.nodes[i].raft.term == 1 for i in (1, 2, 3))


def test_a_trade_is_acknowledged_only_when_a_majority_holds_it():
    net = elected()
    net.down.add(2)
    net.down.add(1)
    net.place(3, "r1")
    assert net.reply("r1") is None  # only the leader has it
    assert net.nodes[3].raft.commit < net.logs[3].last_index()
    net.down.discard(1)
    net.advance(0.2)  # a heartbeat carries the entry to replica 1
    done = net.reply("r1")
    assert isinstance(done, TradeDone) and done.txn == 1
    assert net.logs[1].by_request("r1") is not None


def test_transaction_numbers_start_at_one_and_rise_by_one():
    net = elected()
    for k in range(5):
        net.place(3, f"r{k}")
    assert [net.reply(f"r{k}").txn for k in range(5)] == [1, 2, 3, 4, 5]


def test_the_first_leader_of_a_new_cluster_logs_the_initial_stocks_first():
    net = elected()
    first = net.logs[3].entries(1, 1)[0]
    assert first.genesis == GENESIS and first.trade is None
    for i in (1, 2, 3):  # every replica's book is the fold of its committed log
        assert net.nodes[i].book.applied == net.nodes[i].raft.commit
        assert net.nodes[i].book.all() == fold(net.logs[i].entries(1, net.nodes[i].raft.commit)).all()


def test_a_refused_trade_takes_no_number_is_logged_and_answered_once_committed():
    net = elected()
    net.down.update({1, 2})
    net.place(3, "big", qty=1000)
    assert net.reply("big") is None  # decided, logged, not yet committed: no answer yet
    entry = net.logs[3].by_request("big")
    assert entry.trade.txn is None and entry.trade.status == "not_enough_stock"
    net.down.clear()
    net.advance(0.2)
    assert isinstance(net.reply("big"), Error) and net.reply("big").code == "not_enough_stock"
    net.place(3, "small")
    assert net.reply("small").txn == 1
    net.place(3, "big", qty=1000)  # a retry gets the same refusal back, from the log
    assert net.reply("big").code == "not_enough_stock"


def test_a_trade_reply_carries_the_stock_as_the_committed_log_leaves_it():
    net = elected()
    net.place(3, "r1", qty=2)
    done = net.reply("r1")
    entry = net.logs[3].by_request("r1")
    assert done.index == entry.index
    assert done.stock == StockInfo(name="FishCo", price=10.0, quantity=98, volume=2, version=entry.index,
                                   index=entry.index)


def test_a_retry_with_the_same_request_id_gets_the_first_result():
    net = elected()
    net.place(3, "r1", qty=2)
    first = net.reply("r1")
    net.place(3, "r1", qty=2)
    again = net.reply("r1")
    assert (again.txn, again.name, again.quantity, again.side) == (first.txn, "FishCo", 2, "buy")
    assert again.stock.quantity == 98  # the stock as it stands: carried out once
    assert net.nodes[3].book.get("FishCo").quantity == 98


def test_the_leader_decides_on_its_uncommitted_entries_too():
    net = elected()
    net.down.update({1, 2})
    net.place(3, "a", qty=60)
    net.place(3, "b", qty=60)  # sees a's 60 gone, though a has not committed
    assert net.logs[3].by_request("a").trade.txn == 1
    assert net.logs[3].by_request("b").trade.status == "not_enough_stock"
    net.down.clear()
    net.advance(0.2)
    assert net.reply("a").txn == 1 and net.reply("b").code == "not_enough_stock"


def test_a_queued_trade_is_dropped_at_its_deadline_and_never_proposed():
    """A trade waits at the leader only for its barrier; if its frontend's
    deadline passes meanwhile, it is dropped and never carried out."""
    net = elected()
    leader = net.nodes[3]
    net.down.update({1, 2})  # the barrier cannot commit
    net.run(3, leader.desk.start(leader.raft.term, net.now))  # as a new leadership does
    net.run(3, leader.replicate(net.now))
    net.place(3, "late", expires=net.now + 0.05)
    net.place(3, "on-time", expires=net.now + 5)
    assert net.reply("late") is None and len(leader.desk.queue) == 2
    net.now += 0.1
    net.run(3, leader.tick(net.now))
    assert net.reply("late").code == "deadline_passed"
    net.down.clear()
    net.advance(0.3)  # the barrier commits: what is still queued is decided
    assert isinstance(net.reply("on-time"), TradeDone)
    assert net.logs[3].by_request("late") is None


def test_a_queued_retry_whose_first_attempt_is_in_the_log_is_not_dropped_at_its_deadline():
    net = elected()
    leader = net.nodes[3]
    net.down.update({1, 2})
    net.place(3, "r1")  # logged, not committed
    net.run(3, leader.desk.start(leader.raft.term, net.now))
    net.run(3, leader.replicate(net.now))
    net.place(3, "r1", expires=net.now + 0.05)  # the frontend's retry, with a short deadline
    net.now += 0.1
    net.run(3, leader.tick(net.now))
    assert net.reply("r1") is None  # not told "not carried out": it was
    net.down.clear()
    net.advance(0.3)
    assert isinstance(net.reply("r1"), TradeDone)


def test_any_replica_answers_a_lookup_from_its_book_once_it_reached_the_index_asked():
    net = elected()
    net.place(3, "r1", qty=4)
    index = net.reply("r1").index
    net.ask(3, "l1", Lookup("FishCo", min_index=index))
    assert net.reply("l1").quantity == 96
    net.ask(1, "l2", Lookup("FishCo", min_index=index + 50))
    behind = net.reply("l2")
    assert behind.code == "behind" and behind.index == net.nodes[1].book.applied
    net.ask(2, "l3", Lookup("Nope"))
    assert net.reply("l3").code == "stock_not_found"
    blank = replica(1, [1, 2, 3], MemoryLog(blank=True), net.now)
    assert blank.lookup(Lookup("FishCo")).code == "behind"  # no genesis yet: it knows no stock


def test_a_replica_feeds_committed_entries_at_once_or_when_they_commit():
    net = elected()
    commit = net.nodes[3].raft.commit
    net.ask(3, "c1", ReadCommitted(after=0, limit=2, wait_ms=500))
    page = net.reply("c1")
    assert isinstance(page, CommittedEntries) and [e.index for e in page.entries] == [1, 2][:commit]
    assert page.commit == commit and page.leader == 3
    net.ask(2, "c2", ReadCommitted(after=commit, limit=100, wait_ms=500))  # nothing new: held
    assert net.reply("c2") is None
    net.place(3, "r1")
    net.advance(0.2)  # a heartbeat tells the follower the new commit index
    page = net.reply("c2")
    assert [e.trade.request_id for e in page.entries if e.trade] == ["r1"]
    net.ask(1, "c3", ReadCommitted(after=page.commit, limit=100, wait_ms=50))
    net.advance(0.1)
    assert net.reply("c3").entries == []  # the wait ran out


def test_a_request_id_reused_for_another_trade_is_refused():
    net = elected()
    net.place(3, "r1", qty=2)
    net.place(3, "r1", qty=3)
    assert isinstance(net.reply("r1"), Error) and net.reply("r1").code == "key_reused"


def test_a_follower_says_who_leads():
    net = elected()
    net.place(1, "r1")
    reply = net.reply("r1")
    assert isinstance(reply, Error) and reply.code == "not_leader" and reply.leader == 3 and reply.epoch == 1


def test_a_voter_refuses_a_candidate_that_lacks_its_entries_and_campaigns_itself():
    net = elected()
    net.place(3, "r1")
    net.down.add(2)  # replica 2 misses the next trades
    net.place(3, "r2")
    net.place(3, "r3")
    net.down.discard(2)
    net.down.add(3)
    voter = net.nodes[1]
    voter.raft.peer_down(3, net.now)
    stale = net.logs[2]
    out = voter.on_peer(VoteRequest(term=2, candidate=2, last_index=stale.last_index(),
                                    last_term=stale.last_term(), pre_vote=True), net.now + 0.001)
    reply = next(o.msg for o in out if isinstance(o, SendPeer))
    assert isinstance(reply, VoteReply) and not reply.granted and reply.log_ahead
    assert voter.raft.election_due <= net.now + 0.001


def test_after_the_leader_dies_the_up_to_date_replica_wins_not_the_higher_id():
    net = elected()
    net.down.add(2)
    net.place(3, "r1")  # committed by 3 and 1 only
    assert isinstance(net.reply("r1"), TradeDone)
    net.down.discard(2)
    net.down.add(3)
    for i in (1, 2):
        net.run(i, net.nodes[i].peer_down(3, net.now))
    net.advance(1.0)
    assert net.leader() == 1
    assert net.logs[2].by_request("r1") is not None  # the new leader brought replica 2 up to date


def test_a_pre_vote_raises_no_term_and_a_live_leader_keeps_its_followers():
    net = elected()
    follower = net.nodes[1]
    term = follower.raft.term
    out = follower.on_peer(VoteRequest(term=term + 1, candidate=2, last_index=99, last_term=term, pre_vote=True),
                           net.now)
    assert not [o for o in out if isinstance(o, SendPeer)]  # it hears its leader: no vote, the request waits
    assert follower.raft.term == term
    net.advance(1.0)  # the leader keeps beating: the request is forgotten, never granted
    assert net.leader() == 3 and follower.raft.term == term and not follower.raft.held


def test_a_held_pre_vote_is_granted_as_soon_as_the_voter_learns_its_leader_died():
    """The candidate's socket monitor may report the leader's death a moment
    before the voter's: the voter holds the request instead of refusing it."""
    net = elected()
    voter = net.nodes[1]
    term = voter.raft.term
    request = VoteRequest(term=term + 1, candidate=2, last_index=voter.raft.log.last_index(),
                          last_term=voter.raft.log.last_term(), pre_vote=True)
    assert not [o for o in voter.on_peer(request, net.now) if isinstance(o, SendPeer)]
    out = voter.raft.peer_down(3, net.now + 0.001)
    reply = next(o.msg for o in out if isinstance(o, SendPeer))
    assert isinstance(reply, VoteReply) and reply.granted and reply.pre_vote


def test_a_held_pre_vote_is_granted_when_the_leader_falls_silent():
    """A hung leader closes no connection: the voter answers once the leader
    has been silent for the window less a beat, as a fresh request would be."""
    net = elected()
    voter = net.nodes[1]
    net.down.add(3)  # hung: no more heartbeats, no disconnect
    request = VoteRequest(term=voter.raft.term + 1, candidate=2, last_index=voter.raft.log.last_index(),
                          last_term=voter.raft.log.last_term(), pre_vote=True)
    assert not [o for o in voter.on_peer(request, net.now) if isinstance(o, SendPeer)]
    due = voter.raft.next_deadline()
    assert due <= voter.raft.last_contact + TIMING.election_s - TIMING.heartbeat_s
    out = voter.tick(due)
    assert any(isinstance(o, SendPeer) and o.msg.granted for o in out)


def test_a_starting_replica_refuses_votes_until_it_caught_up_or_heard_no_leader():
    net = Net()
    fresh = net.nodes[1]
    out = fresh.on_peer(VoteRequest(term=1, candidate=2, last_index=0, last_term=0, pre_vote=False), 0.01)
    assert not next(o.msg for o in out if isinstance(o, SendPeer)).granted
    out = fresh.on_peer(VoteRequest(term=1, candidate=2, last_index=0, last_term=0, pre_vote=False), 0.5)
    assert next(o.msg for o in out if isinstance(o, SendPeer)).granted


def test_a_stale_leader_is_refused_by_replicas_and_steps_down():
    net = elected()
    follower = net.nodes[1]
    out = follower.on_peer(AppendEntries(term=0, leader=2, prev_index=0, prev_term=0, entries=[], commit=0), net.now)
    reply = next(o.msg for o in out if isinstance(o, SendPeer))
    assert not reply.success and reply.term == 1
    leader = net.nodes[3]
    leader.on_peer(reply.__class__(term=5, follower=1, success=False, match_index=0, hint=0), net.now)
    assert leader.raft.role is Role.FOLLOWER and leader.raft.term == 5


def test_a_leader_cut_off_from_its_majority_steps_down():
    net = elected()
    net.down.update({1, 2})
    net.nodes[3].raft.peer_down(1, net.now)
    now = net.now
    while net.nodes[3].raft.role is Role.LEADER and net.now < now + 1:
        net.now = round(net.now + 0.01, 6)
        net.run(3, net.nodes[3].tick(net.now))
    assert net.nodes[3].raft.role is Role.FOLLOWER
    assert net.now - now <= TIMING.election_s + TIMING.heartbeat_s + 0.02


def test_an_unknown_order_is_reported_only_after_a_majority_confirms_leadership():
    net = elected()
    net.place(3, "r1")
    net.run(3, net.nodes[3].on_client("q1", GetOrder(1), net.now))
    assert net.reply("q1") == OrderInfo(txn=1, name="FishCo", quantity=1, side="buy")
    net.run(3, net.nodes[3].on_client("q0", GetOrder(0), net.now))
    net.advance(0.2)
    reply = net.reply("q0")  # numbers start at 1, as the seed's order server counts
    assert isinstance(reply, Error) and reply.code == "order_not_found"
    net.down.update({1, 2})
    net.run(3, net.nodes[3].on_client("q2", GetOrder(7), net.now))
    assert net.reply("q2") is None  # no majority answered: no verdict
    net.down.clear()
    net.advance(0.2)
    reply = net.reply("q2")
    assert isinstance(reply, Error) and reply.code == "order_not_found"


def test_entries_of_an_earlier_term_commit_only_with_one_of_the_current_term():
    log = MemoryLog()
    log.append([LogEntry(1, 1, genesis=GENESIS), LogEntry(2, 1, TradeRecord("old", "FishCo", 1, "buy", 1))])
    log.save_hard_state(1, None)
    logs = {1: log, 2: MemoryLog(), 3: MemoryLog()}
    net = Net(logs=logs)
    net.down.add(3)
    net.advance(1.5)
    leader = net.leader()
    assert leader == 1  # replica 2 grants: replica 1's log is longer
    first = net.logs[leader].entries(1, 3)
    assert first[1].trade.request_id == "old" and first[2].trade is None and first[2].term == 2
    assert net.nodes[leader].raft.commit >= 3


def test_a_message_that_claims_to_come_from_the_replica_itself_or_a_stranger_is_ignored():
    """A misrouted link or a duplicated id must not depose a leader: found when
    a test proxy once looped a leader's own heartbeats back to it."""
    net = elected()
    leader = net.nodes[3]
    for sender in (3, 9):
        out = leader.on_peer(AppendEntries(term=leader.raft.term, leader=sender, prev_index=0, prev_term=0,
                                           entries=[], commit=0), net.now)
        assert out == []
        assert leader.raft.role is Role.LEADER


def test_the_status_reports_raft_the_desk_and_the_shells_counters():
    net = elected()
    net.place(3, "r1")
    net.place(3, "r2")
    leader = net.nodes[3].status(Counters(trades=2, reads=1))
    assert (leader.id, leader.role, leader.term, leader.leader) == (3, ReplicaRole.LEADER, 1, 3)
    assert leader.ready and (leader.last_txn, leader.next_txn) == (2, 3)
    assert leader.last_index == leader.commit == net.logs[3].last_index()
    assert (leader.queued, leader.awaiting, leader.down, leader.applied) == (0, 0, [], leader.commit)
    assert (leader.trades, leader.reads, leader.bad_requests, leader.dropped_sends) == (2, 1, 0, 0)
    net.run(1, net.nodes[1].peer_down(2, net.now))
    follower = net.nodes[1].status()
    assert (follower.role, follower.leader, follower.ready, follower.down) == (ReplicaRole.FOLLOWER, 3, False, [2])
    assert not follower.recovering and follower.last_txn == 2 and follower.trades == 0


# --- blank replicas (a new cluster, a lost disk) -------------------------------------------------------------


def hello_all(net: Net) -> None:
    """The connections come up: every replica says hello to every other."""
    for i in net.ids:
        for p in net.ids:
            if p != i:
                net.run(i, net.nodes[i].peer_up(p, net.now))


def test_a_new_cluster_of_blank_replicas_elects_the_highest_id_once_all_said_hello():
    # (Without the hellos at connection time, blank replicas say it again every window.)
    net = Net(logs={i: MemoryLog(blank=True) for i in (1, 2, 3)})
    hello_all(net)
    net.advance(1.0)
    assert net.leader() == 3
    net.place(3, "r1")
    net.advance(0.3)
    assert isinstance(net.reply("r1"), TradeDone)
    assert not any(net.logs[i].is_blank() for i in (1, 2, 3))  # all caught up, all voters now


def test_a_blank_replica_votes_for_nobody_with_history_until_it_caught_up():
    net = elected()
    hello_all(net)
    net.place(3, "r1")
    net.logs[1] = MemoryLog(blank=True)  # replica 1 lost its disk
    net.nodes[1] = replica(1, [1, 2, 3], net.logs[1], net.now)
    request = VoteRequest(term=9, candidate=2, last_index=0, last_term=0, pre_vote=False)
    replies = [o.msg for o in net.nodes[1].on_peer(request, net.now) if isinstance(o, SendPeer)]
    assert replies == [VoteReply(term=9, voter=1, granted=False, pre_vote=False, log_ahead=False, blank=True)]
    assert net.logs[1].voted_for is None  # not even recorded
    net.advance(0.5)  # the leader's heartbeats carry everything to it
    assert not net.logs[1].is_blank() and net.logs[1].voted_for == 3 and net.logs[1].term == net.nodes[3].raft.term
    assert net.logs[1].entries(1, 99) == net.logs[3].entries(1, 99)


def test_a_follower_whose_log_shrank_is_sent_what_it_lacks_again():
    net = elected()
    for k in range(5):
        net.place(3, f"r{k}")
    net.advance(0.2)
    leader = net.nodes[3].raft
    assert leader.match_index[1] == net.logs[3].last_index()
    net.logs[1] = MemoryLog(blank=True)  # lost its disk; the leader still believes it holds everything
    net.nodes[1] = replica(1, [1, 2, 3], net.logs[1], net.now)
    net.advance(0.3)
    assert net.logs[1].last_index() == net.logs[3].last_index()
    assert leader.match_index[1] == net.logs[3].last_index()


def test_a_replica_that_restarts_keeps_its_book_and_folds_only_what_committed_after_it():
    net = elected()
    for k in range(3):
        net.place(3, f"r{k}", qty=5)
    net.advance(0.2)
    net.place(3, "r3", qty=5)  # the book is written with the next write: now
    log = net.logs[1]
    written = log.load_book()
    assert written.applied >= 4 and written.get("FishCo").quantity <= 85
    again = replica(1, [1, 2, 3], log, net.now)
    assert again.raft.commit == written.applied and again.book.all() == written.all()
    net.nodes[1] = again
    net.advance(0.3)
    assert again.book.all() == net.nodes[3].book.all() and again.book.applied == net.nodes[3].book.applied


def test_a_conflict_is_not_taken_for_a_lost_disk_but_a_shorter_log_is():
    net = elected()
    for k in range(5):
        net.place(3, f"r{k}")
    net.advance(0.2)
    leader = net.nodes[3]
    acked = leader.raft.match_index[1]
    term = leader.raft.term
    # a conflict further on (stale entries of an old term past what it acknowledged): its log is long
    net.down.add(1)  # keep the real follower's answers out of it
    leader.on_peer(AppendReply(term=term, follower=1, success=False, match_index=0, hint=1, last=acked + 5), net.now)
    assert leader.raft.match_index[1] == acked
    # a log shorter than what it acknowledged: it lost data, and counts for nothing until it acknowledges again
    leader.on_peer(AppendReply(term=term, follower=1, success=False, match_index=0, hint=2, last=2), net.now)
    assert leader.raft.match_index[1] == 0


def test_a_follower_answers_an_order_it_knows_committed_and_sends_the_rest_to_the_leader():
    net = elected()
    net.place(3, "r1")
    net.advance(0.2)  # a heartbeat tells the followers the commit
    net.ask(1, "q1", GetOrder(1))
    assert net.reply("q1") == OrderInfo(txn=1, name="FishCo", quantity=1, side="buy")
    net.ask(1, "q9", GetOrder(9))  # no such order: only the leader may say so
    reply = net.reply("q9")
    assert isinstance(reply, Error) and reply.code == "not_leader" and reply.leader == 3
    # An entry the follower holds but does not know committed is not answered either.
    net.down.add(2)
    net.place(3, "r2")
    assert net.logs[1].by_request("r2") is not None and net.nodes[1].raft.commit < net.logs[1].by_request("r2").index
    net.ask(1, "q2", GetOrder(2))
    assert isinstance(net.reply("q2"), Error) and net.reply("q2").code == "not_leader"


def test_a_leader_stepping_down_for_its_disk_first_tells_the_followers_what_committed():
    net = elected()
    net.place(3, "r1")  # committed at the leader; the followers learn it only from the next append
    assert net.reply("r1") is not None
    index = net.logs[3].by_request("r1").index
    assert all(net.nodes[i].raft.commit < index for i in (1, 2))
    net.run(3, net.nodes[3].storage_failed("order-3's disk is full", net.now))
    assert net.nodes[3].raft.role is Role.FOLLOWER
    assert all(net.nodes[i].raft.commit >= index for i in (1, 2))
    net.ask(2, "q1", GetOrder(1))
    assert net.reply("q1") == OrderInfo(txn=1, name="FishCo", quantity=1, side="buy")


def test_an_append_from_behind_what_a_follower_holds_never_lowers_its_commit():
    net = elected()
    for k in range(3):
        net.place(3, f"r{k}")
    net.advance(0.2)
    follower = net.nodes[1]
    commit = follower.raft.commit
    stale = AppendEntries(term=follower.raft.term, leader=3, prev_index=1, prev_term=net.logs[3].term_at(1),
                          entries=[], commit=commit + 5, probe=99)
    follower.on_peer(stale, net.now)
    assert follower.raft.commit == commit
