"""Leader election and log replication among the order replicas (Raft), pure.

This module imports no socket and reads no clock: every entry point takes
``now`` (seconds) and returns a list of outputs for the I/O shell to carry
out. Storage goes through :class:`order.log.LogStore`, whose writes are
durable when they return.

Roles and transitions::

    follower --election due--> pre_candidate --majority of pre-votes--> candidate
    candidate --majority of votes--> leader
    pre_candidate / candidate --round timed out--> follower (campaigns again later)
    any role --sees a higher term--> follower
    leader --no word from a majority for election_s (check quorum)--> follower

What it adds to textbook Raft, and why:

* **Pre-vote.** A replica first asks whether it *would* win; only then does it
  raise its term. A replica cut off from the leader cannot disrupt it later.
* **Priority by id.** An election is due ``election_s`` after the last word
  from the leader, plus ``rank_step_s`` for every higher-id replica other than
  that leader and not known to be down; so among up-to-date replicas the highest id campaigns first and
  wins, as the seed's leader choice asks. Votes still require the candidate's
  log to be at least as up to date as the voter's, so a replica that lacks
  committed entries can never win. A voter that refuses for that reason and
  sees no leader campaigns at once itself.
* **Fast failover.** The shell reports a peer's connection closing
  (:meth:`Raft.peer_down`, from ZeroMQ's socket monitor); a follower whose
  leader went down campaigns after its rank delay alone, without waiting for
  missed heartbeats. A voter that still hears its leader holds a pre-vote
  request instead of refusing it, and answers it as soon as it learns the
  leader is gone: the candidate's socket monitor often speaks a moment before
  the voter's, and a refusal would cost the candidate a retry.
* **Catch-up before voting.** A replica that starts refuses votes until it has
  caught up with a leader's commit index, or until it has heard no leader for
  a whole election window (so a cluster restarting from nothing still elects).
* **Read barrier.** :meth:`Raft.read_barrier` numbers a heartbeat round; the
  leader may answer "no such order" only after a majority echoed that round,
  which proves no newer leader had committed anything at the time of the read.
* **Blank replicas.** A replica whose data is new (the store says
  :meth:`order.log.LogStore.is_blank`: a new cluster, or a lost disk) has
  forgotten its votes and its log. It neither votes nor campaigns, and the
  leader counts it toward no majority (commit, read barrier, check quorum),
  until it has caught up with a leader; then it records that leader as its
  vote of that term, so it can never vote for a rival there. The one
  exception is a new cluster: when every peer says it is blank too
  (:class:`common.protocol.PeerHello` on each new connection, and the
  ``blank`` flag of votes and replies), blank replicas elect among themselves.
  A leader whose follower's log turns out shorter than what that follower had
  acknowledged (its disk was lost) starts again from what it now has.
* **Storage.** A replica whose disk refuses writes (:meth:`Raft.storage_failed`)
  steps down if it leads, and neither votes nor campaigns until
  :meth:`Raft.storage_recovered`; its store's writes raise before any
  in-memory state changes, so a refused write changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.protocol import (
    AppendEntries, AppendReply, LogEntry, Message, PeerHello, ReplicaRole, StockRow, TradeRecord, VoteReply,
    VoteRequest,
)

from .log import LogStore

# Entries per AppendEntries message, and how far a follower may lag behind
# what was already sent to it before the leader waits for acknowledgements.
MAX_ENTRIES_PER_MESSAGE = 256
MAX_INFLIGHT_ENTRIES = 4096


# The role is on the wire too (in heartbeats), so the protocol defines it.
Role = ReplicaRole


@dataclass(frozen=True)
class Timing:
    """Timers, in seconds. ``election_s`` (the heartbeat interval times the
    liveness count) must be several ``heartbeat_s``; ``rank_step_s`` should be
    a fraction of ``election_s``."""

    heartbeat_s: float
    election_s: float
    rank_step_s: float


# --- outputs ----------------------------------------------------------------


@dataclass(frozen=True)
class SendPeer:
    """Send ``msg`` to replica ``peer``."""

    peer: int
    msg: Message


@dataclass(frozen=True)
class Flush:
    """Make the staged entries durable now (after the sends before it), then
    call :meth:`Raft.flushed`."""


@dataclass(frozen=True)
class BecameLeader:
    term: int


@dataclass(frozen=True)
class SteppedDown:
    """This replica stopped leading (or campaigning) at ``term``."""

    term: int


@dataclass(frozen=True)
class LeaderChanged:
    """A follower learned who leads ``term`` (None: nobody it knows of)."""

    leader: int | None
    term: int


@dataclass(frozen=True)
class Campaign:
    """This replica asks for (pre-)votes for ``term``."""

    term: int
    pre_vote: bool


@dataclass(frozen=True)
class VoteRefused:
    """A peer refused this replica's (pre-)vote request, and why."""

    voter: int
    term: int
    pre_vote: bool
    log_ahead: bool


@dataclass(frozen=True)
class Committed:
    """Entries up to ``index`` are committed."""

    index: int


@dataclass(frozen=True)
class ReadConfirmed:
    """A majority acknowledged heartbeat round ``probe``: leadership held then."""

    probe: int


@dataclass(frozen=True)
class CaughtUp:
    """A starting replica now holds everything its leader had committed."""

    index: int


class Raft:
    """One replica's consensus state.

    :param me: this replica's id.
    :param peers: the other replicas' ids.
    :param log: durable storage; its hard state is loaded here.
    :param commit: an index known to be committed (what the replica's book
        was folded to when it was last written): the commit index starts there.
    """

    def __init__(self, me: int, peers: list[int], log: LogStore, timing: Timing, now: float,
                 commit: int = 0) -> None:
        self.me = me
        self.peers = sorted(peers)
        self.log = log
        self.t = timing
        self.term, self.voted_for = log.hard_state()
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.commit = min(commit, log.last_index())
        self.started = now
        self.recovering = True
        self.down: set[int] = set()
        self.last_contact: float | None = None
        self.election_due = now + self._election_delay()
        self.round_deadline = 0.0
        self.votes: set[int] = set()
        self.refusals: set[int] = set()
        # Pre-vote requests held while our leader looked alive, by candidate.
        self.held: dict[int, tuple[VoteRequest, float]] = {}
        # leader state
        self.next_index: dict[int, int] = {}
        self.match_index: dict[int, int] = {}
        self.last_ack: dict[int, float] = {}
        self.acked_probe: dict[int, int] = {}
        self.unacked: dict[int, bool] = {}  # an append with entries sent to the peer and not answered yet
        self.probe = 0
        self.heartbeat_due = now
        self.leader_since = now
        self.durable = log.last_index()  # the leader's own entries known to be on disk
        self.staged = False  # entries staged that replicate() has not sent and flushed yet
        self.blank = log.is_blank()
        self.peer_blank: dict[int, bool] = {}  # what each peer last said of its data
        self.hello_due = now + timing.election_s
        self.storage_ok = True

    # --- queries ------------------------------------------------------------

    @property
    def majority(self) -> int:
        return (len(self.peers) + 1) // 2 + 1

    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def _cluster_new(self) -> bool:
        """Every replica, this one included, says its data is new."""
        return self.blank and len(self.peer_blank) == len(self.peers) and all(self.peer_blank.values())

    def _may_vote(self, candidate_blank: bool) -> bool:
        if not self.storage_ok:
            return False
        return not self.blank or (candidate_blank and self._cluster_new())

    def _may_campaign(self) -> bool:
        return self.storage_ok and (not self.blank or self._cluster_new())

    def _counted(self, peer: int) -> bool:
        """Whether ``peer`` counts toward a majority (a blank one does not)."""
        return not self.peer_blank.get(peer, False)

    def next_deadline(self) -> float:
        """When :meth:`tick` must run next."""
        if self.role is Role.LEADER:
            return self.heartbeat_due
        if self.role is Role.FOLLOWER:
            due = min(self.election_due, self.hello_due) if self.blank and self.leader is None else self.election_due
            if self.held and self.last_contact is not None:
                return min(due, self._fresh_until())
            return due
        return self.round_deadline

    # --- timers -------------------------------------------------------------

    def tick(self, now: float) -> list:
        out: list = []
        if self.role is Role.LEADER:
            if now >= self.heartbeat_due:
                self._broadcast(now, out)
            self._check_quorum(now, out)
        elif self.role is Role.FOLLOWER:
            if self.blank and self.leader is None and now >= self.hello_due:
                # Say it again (a hello may have been lost): a new cluster elects only once
                # every replica has heard that every other one is new.
                self.hello_due = now + self.t.election_s
                out.extend(SendPeer(p, PeerHello(replica=self.me, term=self.term, blank=True)) for p in self.peers)
            if self.recovering and self._silent_for_window(now):
                self.recovering = False
            self._answer_held(now, out)
            if now >= self.election_due and not self.recovering and self._may_campaign():
                self._campaign(now, out)
            elif now >= self.election_due:
                self.election_due = now + self._election_delay()
        elif now >= self.round_deadline:
            # No majority this round; campaign again after our rank delay.
            self._become_follower(self.term, None, now, out)
            self.election_due = now + self._rank_delay()
        return out

    # --- connection events from the socket monitor -------------------------

    def peer_down(self, peer: int, now: float) -> list:
        out: list = []
        if peer in self.down or peer not in self.peers:
            return out
        self.down.add(peer)
        self.held.pop(peer, None)
        if self.role is Role.FOLLOWER and self.leader == peer:
            self.last_contact = None
            self.election_due = min(self.election_due, now + self._rank_delay())
            self._answer_held(now, out)
        return out

    def peer_up(self, peer: int, now: float) -> list:
        """The connection to ``peer`` is up: tell it who we are."""
        self.down.discard(peer)
        if peer not in self.peers:
            return []
        return [SendPeer(peer, PeerHello(replica=self.me, term=self.term, blank=self.blank))]

    # --- storage, as the shell finds it -----------------------------------------

    def storage_failed(self, now: float) -> list:
        """The disk refused a write: stop leading (a replica that can write
        should), and neither vote nor campaign until it writes again."""
        out: list = []
        self.storage_ok = False
        if self.role is Role.LEADER:
            self._tell_commit(out)
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, None, now, out)
        return out

    def _tell_commit(self, out: list) -> None:
        """Tell every follower the commit index, up to what it is known to
        hold, in an append without entries (nothing for it to write): a
        leader that is about to step down leaves the followers knowing what
        committed, so they can answer order reads of it while no leader can
        be elected."""
        for peer in self.peers:
            prev = self.match_index[peer]
            out.append(SendPeer(peer, AppendEntries(
                term=self.term, leader=self.me, prev_index=prev, prev_term=self.log.term_at(prev) or 0,
                entries=[], commit=self.commit, probe=self.probe,
            )))

    def storage_recovered(self, now: float) -> list:
        self.storage_ok = True
        return []

    # --- leader API -----------------------------------------------------------

    def stage(self, trades: list[TradeRecord | None], genesis: list[StockRow] | None = None) -> list[LogEntry]:
        """Append entries to the leader's log (``None`` for a no-op; with
        ``genesis``, the first entry holds the initial stocks), visible at once
        but neither sent nor durable until :meth:`replicate`: the entries
        staged in one read of the sockets leave together (group commit).

        :returns: the entries as logged (with their indices); none if this
            replica does not lead.
        """
        if self.role is not Role.LEADER or not trades:
            return []
        first = self.log.last_index() + 1
        entries = [LogEntry(index=first + i, term=self.term, trade=t, genesis=genesis if i == 0 else None)
                   for i, t in enumerate(trades)]
        self.log.stage(entries)
        self.staged = True
        return entries

    def replicate(self, now: float) -> list:
        """Send what was staged to the followers that have no append
        unacknowledged, and make it durable here (a :class:`Flush`, which the
        replica puts last, so the leader's fsync overlaps theirs).

        A follower still writing the last append gets the entries staged since
        with its acknowledgement, as one append: under load, the trades that
        arrive during a follower's fsync share its next one (group commit).
        """
        if not self.staged:
            return []
        self.staged = False
        out: list = []
        if self.role is not Role.LEADER:
            return out
        for peer in self.peers:
            if not self.unacked.get(peer):
                self._send_append(peer, out)
        if not self.peers:
            out.append(Flush())
        return out

    def flushed(self, now: float) -> list:
        """The shell made every staged entry durable."""
        out: list = []
        self.durable = self.log.last_index()
        if self.role is Role.LEADER:
            self._advance_commit(out)
        return out

    def read_barrier(self, now: float) -> tuple[int, list]:
        """Start a heartbeat round whose majority echo proves leadership.

        :returns: the round's probe number and outputs; a :class:`ReadConfirmed`
            with that number (or higher) follows once a majority answered.
        """
        out: list = []
        self._broadcast(now, out)
        if self.majority == 1:
            out.append(ReadConfirmed(self.probe))
        return self.probe, out

    # --- messages -------------------------------------------------------------

    def handle(self, msg: Message, now: float) -> list:
        """Handle a replication message from a peer (any message proves the
        sender is up)."""
        out: list = []
        sender = _sender(msg)
        if sender == self.me or sender not in self.peers:
            return out  # not from a peer of ours (a misrouted link, a duplicate id): never obey it
        self.down.discard(sender)
        if isinstance(msg, PeerHello):
            self.peer_blank[sender] = msg.blank
        elif isinstance(msg, AppendEntries):
            self._on_append(msg, now, out)
        elif isinstance(msg, AppendReply):
            self._on_append_reply(msg, now, out)
        elif isinstance(msg, VoteRequest):
            self._on_vote_request(msg, now, out)
        elif isinstance(msg, VoteReply):
            self._on_vote_reply(msg, now, out)
        return out

    # --- elections ------------------------------------------------------------

    def _rank_delay(self) -> float:
        # The leader being replaced does not count: it is the one that failed.
        higher = sum(1 for p in self.peers if p > self.me and p not in self.down and p != self.leader)
        return higher * self.t.rank_step_s

    def _election_delay(self) -> float:
        return self.t.election_s + self._rank_delay()

    def _leader_fresh(self, now: float) -> bool:
        """Whether a voter still hears its leader (and so refuses to replace it).

        One heartbeat interval short of the election window: a leader that
        beats on time is always fresh, and a leader that every follower lost
        stops being fresh for all of them by the time the first one campaigns
        (their last heartbeats arrived within moments of each other).
        """
        if self.role is Role.LEADER:
            return True
        return (
            self.leader is not None
            and self.leader not in self.down
            and self.last_contact is not None
            and now < self._fresh_until()
        )

    def _fresh_until(self) -> float:
        return self.last_contact + self.t.election_s - self.t.heartbeat_s

    def _answer_held(self, now: float, out: list) -> None:
        """Answer the held pre-vote requests once our leader no longer looks
        alive; forget those older than a window (their rounds are over)."""
        if not self.held:
            return  # the usual case, on every tick
        self.held = {c: (m, at) for c, (m, at) in self.held.items() if now - at < self.t.election_s}
        if self.held and self.role is Role.FOLLOWER and not self._leader_fresh(now):
            held, self.held = self.held, {}
            for request, _at in held.values():
                self._on_vote_request(request, now, out)

    def _silent_for_window(self, now: float) -> bool:
        """No leader for a whole window: a cluster that restarts from nothing
        elects again. Never for a blank replica of a cluster with history: it
        must hear a leader."""
        if self.blank and not self._cluster_new():
            return False
        last = self.started if self.last_contact is None else max(self.started, self.last_contact)
        return now - last >= self.t.election_s

    def _log_ok(self, last_term: int, last_index: int) -> bool:
        return (last_term, last_index) >= (self.log.last_term(), self.log.last_index())

    def _campaign(self, now: float, out: list) -> None:
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self.votes = {self.me}
        self.refusals = set()
        self.round_deadline = now + self.t.election_s
        if len(self.votes) >= self.majority:
            self._start_election(now, out)
            return
        request = VoteRequest(
            term=self.term + 1, candidate=self.me, last_index=self.log.last_index(),
            last_term=self.log.last_term(), pre_vote=True, blank=self.blank,
        )
        out.append(Campaign(self.term + 1, True))
        out.extend(SendPeer(p, request) for p in self.peers)

    def _start_election(self, now: float, out: list) -> None:
        self.log.save_hard_state(self.term + 1, self.me)  # first: a refused write changes nothing
        self.term += 1
        self.voted_for = self.me
        self.role = Role.CANDIDATE
        self.votes = {self.me}
        self.refusals = set()
        self.round_deadline = now + self.t.election_s
        if len(self.votes) >= self.majority:
            self._become_leader(now, out)
            return
        request = VoteRequest(
            term=self.term, candidate=self.me, last_index=self.log.last_index(),
            last_term=self.log.last_term(), pre_vote=False, blank=self.blank,
        )
        out.append(Campaign(self.term, False))
        out.extend(SendPeer(p, request) for p in self.peers)

    def _on_vote_request(self, m: VoteRequest, now: float, out: list) -> None:
        if self.recovering and self._silent_for_window(now):
            self.recovering = False
        self.peer_blank[m.candidate] = m.blank
        log_ok = self._log_ok(m.last_term, m.last_index)
        allowed = self._may_vote(m.blank)
        if m.pre_vote:
            would = m.term > self.term and log_ok and not self.recovering and allowed
            if would and self.role is Role.FOLLOWER and self._leader_fresh(now):
                self.held[m.candidate] = (m, now)  # answered when the leader is known gone (_answer_held)
                return
            granted = would and not self._leader_fresh(now)
        else:
            if m.term > self.term and not self._leader_fresh(now):
                self._become_follower(m.term, None, now, out)
            granted = (
                m.term == self.term and self.voted_for in (None, m.candidate)
                and log_ok and not self.recovering and self.role is Role.FOLLOWER and allowed
            )
            if granted:
                self.log.save_hard_state(self.term, m.candidate)  # durable before anyone is told
                self.voted_for = m.candidate
                self.election_due = now + self._election_delay()
        out.append(SendPeer(m.candidate, VoteReply(
            term=self.term, voter=self.me, granted=granted, pre_vote=m.pre_vote, log_ahead=not log_ok,
            blank=self.blank,
        )))
        if (not log_ok and self.role is Role.FOLLOWER and not self.recovering
                and not self._leader_fresh(now)):
            # The candidate lacks entries we hold: we are the better choice.
            self.election_due = min(self.election_due, now)

    def _on_vote_reply(self, m: VoteReply, now: float, out: list) -> None:
        self.peer_blank[m.voter] = m.blank
        if m.term > self.term and not m.granted:
            self._become_follower(m.term, None, now, out)
            return
        if not m.granted:
            in_round = (self.role is Role.PRE_CANDIDATE and m.pre_vote) or (
                self.role is Role.CANDIDATE and not m.pre_vote and m.term == self.term)
            if in_round:
                out.append(VoteRefused(m.voter, m.term, m.pre_vote, m.log_ahead))
                self.refusals.add(m.voter)
                if len(self.peers) + 1 - len((self.refusals | self.down) - self.votes) < self.majority:
                    # This round cannot succeed (refused, or the voters we lack are
                    # down): try again soon rather than at its deadline.
                    self._become_follower(self.term, None, now, out)
                    self.election_due = now + self.t.heartbeat_s / 2 + self._rank_delay()
            return
        if m.pre_vote and self.role is Role.PRE_CANDIDATE:
            self.votes.add(m.voter)
            if len(self.votes) >= self.majority:
                self._start_election(now, out)
        elif not m.pre_vote and self.role is Role.CANDIDATE and m.term == self.term:
            self.votes.add(m.voter)
            if len(self.votes) >= self.majority:
                self._become_leader(now, out)

    def _become_follower(self, term: int, leader: int | None, now: float, out: list) -> None:
        was = self.role
        if term > self.term:
            self.log.save_hard_state(term, None)  # first: a refused write changes nothing
            self.term = term
            self.voted_for = None
        self.role = Role.FOLLOWER
        if was is Role.LEADER or was is Role.CANDIDATE:
            out.append(SteppedDown(self.term))
        if leader != self.leader:
            self.leader = leader
            out.append(LeaderChanged(leader, self.term))
        self.election_due = now + self._election_delay()

    def _become_leader(self, now: float, out: list) -> None:
        if self.blank:  # the first leader of a new cluster: its data is the cluster's now
            self.log.clear_blank()
            self.blank = False
        self.role = Role.LEADER
        self.leader = self.me
        self.recovering = False
        self.leader_since = now
        last = self.log.last_index()
        self.next_index = {p: last + 1 for p in self.peers}
        self.match_index = {p: 0 for p in self.peers}
        self.last_ack = {p: now for p in self.peers}
        self.acked_probe = {p: 0 for p in self.peers}
        self.unacked = {p: False for p in self.peers}
        out.append(BecameLeader(self.term))
        self._broadcast(now, out)

    def _check_quorum(self, now: float, out: list) -> None:
        if len(self.peers) == 0 or now - self.leader_since < self.t.election_s:
            return
        heard = 1 + sum(1 for p in self.peers
                        if self._counted(p) and now - self.last_ack.get(p, -1e9) <= self.t.election_s)
        if heard < self.majority:
            self._become_follower(self.term, None, now, out)

    # --- replication ----------------------------------------------------------

    def _broadcast(self, now: float, out: list) -> None:
        self.probe += 1
        self.heartbeat_due = now + self.t.heartbeat_s
        for peer in self.peers:
            self._send_append(peer, out)

    def _send_append(self, peer: int, out: list) -> None:
        last = self.log.last_index()
        nxt = min(self.next_index[peer], last + 1)
        prev = nxt - 1
        entries: list[LogEntry] = []
        if nxt <= last and prev - self.match_index[peer] < MAX_INFLIGHT_ENTRIES:
            entries = self.log.entries(nxt, min(last, nxt + MAX_ENTRIES_PER_MESSAGE - 1))
        out.append(SendPeer(peer, AppendEntries(
            term=self.term, leader=self.me, prev_index=prev, prev_term=self.log.term_at(prev) or 0,
            entries=entries, commit=self.commit, probe=self.probe,
        )))
        if entries:
            self.next_index[peer] = entries[-1].index + 1
            self.unacked[peer] = True
            if entries[-1].index > self.durable:
                out.append(Flush())  # our own copy of what we just sent, made durable after the sends

    def _on_append(self, m: AppendEntries, now: float, out: list) -> None:
        if m.term < self.term:
            out.append(SendPeer(m.leader, AppendReply(
                term=self.term, follower=self.me, success=False, match_index=0,
                hint=self.log.last_index(), probe=m.probe,
            )))
            return
        if m.term > self.term or self.role is not Role.FOLLOWER or self.leader != m.leader:
            self._become_follower(m.term, m.leader, now, out)
        self.last_contact = now
        self.election_due = now + self._election_delay()

        last = self.log.last_index()
        if m.prev_index > last:
            self._reply_append(m, False, 0, last, out)
            return
        if self.log.term_at(m.prev_index) != m.prev_term:
            conflict = self.log.term_at(m.prev_index) or 0
            hint = max(self.commit, min(m.prev_index, self.log.first_index_of_term(conflict)) - 1)
            self._reply_append(m, False, 0, hint, out)
            return
        new: list[LogEntry] = []
        truncate_from = None
        for i, entry in enumerate(m.entries):
            if entry.index > last:
                new = m.entries[i:]
                break
            if self.log.term_at(entry.index) != entry.term:
                if entry.index <= self.commit:
                    # Never happens while Raft holds; refuse rather than lose a commit.
                    self._reply_append(m, False, 0, self.commit, out)
                    return
                truncate_from = entry.index
                new = m.entries[i:]
                break
        if new:
            self.log.append(new, truncate_from)
        self.durable = self.log.last_index()
        match = m.prev_index + len(m.entries)
        if min(m.commit, match) > self.commit:  # (an append from behind what we hold never lowers it)
            self.commit = min(m.commit, match)
            out.append(Committed(self.commit))
        if self.blank and match >= m.commit:
            # Caught up: from now on a voter, whose vote in this term is its leader's.
            vote = self.voted_for if self.voted_for is not None else m.leader
            self.log.save_hard_state(self.term, vote)
            self.log.clear_blank()
            self.voted_for = vote
            self.blank = False
        if self.recovering and match >= m.commit:
            self.recovering = False
            out.append(CaughtUp(match))
        self._reply_append(m, True, match, match, out)

    def _reply_append(self, m: AppendEntries, success: bool, match: int, hint: int, out: list) -> None:
        out.append(SendPeer(m.leader, AppendReply(
            term=self.term, follower=self.me, success=success, match_index=match, hint=hint, probe=m.probe,
            blank=self.blank, last=self.log.last_index(),
        )))

    def _on_append_reply(self, m: AppendReply, now: float, out: list) -> None:
        if m.term > self.term:
            self._become_follower(m.term, None, now, out)
            return
        if self.role is not Role.LEADER or m.term != self.term or m.follower not in self.next_index:
            return
        peer = m.follower
        self.peer_blank[peer] = m.blank
        self.last_ack[peer] = now
        self.unacked[peer] = False
        if m.probe > self.acked_probe[peer]:
            self.acked_probe[peer] = m.probe
            self._confirm_reads(out)
        shrunk = (m.last < self.match_index[peer] if m.last is not None  # (a peer that does not say: guess)
                  else not m.success and m.hint < self.match_index[peer])
        if m.blank or shrunk:
            # It lost what it had acknowledged (a new disk, a lost write-ahead log): count
            # nothing of it until it acknowledges again, and send from what it has.
            self.match_index[peer] = min(self.match_index[peer], m.match_index if m.success else 0)
        if m.success:
            if m.match_index > self.match_index[peer]:
                self.match_index[peer] = m.match_index
                self._advance_commit(out)
            self.next_index[peer] = max(self.next_index[peer], self.match_index[peer] + 1)
            if self.next_index[peer] <= self.log.last_index():
                self._send_append(peer, out)
        else:
            self.next_index[peer] = max(self.match_index[peer] + 1, min(self.next_index[peer], m.hint + 1))
            self._send_append(peer, out)

    def _advance_commit(self, out: list) -> None:
        matches = sorted([self.durable, *(m if self._counted(p) else 0 for p, m in self.match_index.items())],
                         reverse=True)
        candidate = matches[self.majority - 1]
        if candidate > self.commit and self.log.term_at(candidate) == self.term:
            self.commit = candidate
            out.append(Committed(candidate))

    def _confirm_reads(self, out: list) -> None:
        probes = sorted([self.probe, *(a if self._counted(p) else 0 for p, a in self.acked_probe.items())],
                        reverse=True)
        out.append(ReadConfirmed(probes[self.majority - 1]))


def _sender(msg: Message) -> int | None:
    for attr in ("leader", "follower", "candidate", "voter", "replica"):
        value = getattr(msg, attr, None)
        if value is not None:
            return value
    return None
