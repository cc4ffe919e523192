"""One order replica as a pure state machine: Raft plus the trading desk.

:class:`Replica` is what the I/O shell (:mod:`order.server`) and the
deterministic simulator drive. Every entry point takes ``now`` and returns
outputs; the ones for the outside world are :class:`order.raft.SendPeer`,
:class:`order.desk.ToClient`, :class:`order.desk.ToCatalog` and
:class:`order.raft.Flush` (make staged entries durable, then call
:meth:`Replica.flushed`), and the
signals :class:`BecameLeader`, :class:`SteppedDown`, :class:`LeaderChanged`
and :class:`CaughtUp` are passed on too so the shell can announce them.
Everything else is consumed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.protocol import Error, ErrorCode, GetOrder, Message, PlaceTrade, ReplicaStatus, trade_problem

from .desk import Desk, StepDownRequest, ToClient
from .log import LogStore
from .raft import BecameLeader, Committed, Flush, Raft, ReadConfirmed, SteppedDown, Timing


@dataclass
class Counters:
    """What the I/O shell counts since the process started (for :meth:`Replica.status`)."""

    trades: int = 0
    reads: int = 0
    bad_requests: int = 0
    dropped_sends: int = 0


class Replica:
    """Consensus and trading for replica ``me``.

    :param peers: the other replicas' ids.
    :param catalog_s: how long the desk waits on the catalog before resending.
    """

    def __init__(self, me: int, peers: list[int], log: LogStore, timing: Timing, catalog_s: float,
                 now: float) -> None:
        self.me = me
        self.raft = Raft(me, peers, log, timing, now)
        self.desk = Desk(self.raft, log, catalog_s)
        self.storage_problem: str | None = None

    # --- inputs ---------------------------------------------------------------

    def on_peer(self, msg: Message, now: float) -> list:
        return self._route(self.raft.handle(msg, now), now)

    def on_client(self, ref: Any, msg: Message, now: float) -> list:
        if isinstance(msg, PlaceTrade):
            problem = trade_problem(msg.request_id, msg.name, msg.quantity, msg.side)
            if problem:
                return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, problem))]
            if not self.raft.is_leader():
                return [ToClient(ref, self.not_leader())]
            return self._route(self.desk.place(ref, msg, now), now)
        if isinstance(msg, GetOrder):
            if msg.txn < 0:
                return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, "txn must not be negative"))]
            if not self.raft.is_leader():
                return [ToClient(ref, self.not_leader())]
            return self._route(self.desk.get_order(ref, msg, now), now)
        return [ToClient(ref, Error(ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not an order-service request"))]

    def on_catalog(self, msg: Message, now: float) -> list:
        return self._route(self.desk.on_catalog(msg, now), now)

    def flushed(self, now: float) -> list:
        """The shell made the staged log entries durable (after a Flush output)."""
        return self._route(self.raft.flushed(now), now)

    def peer_down(self, peer: int, now: float) -> list:
        return self._route(self.raft.peer_down(peer, now), now)

    def peer_up(self, peer: int, now: float) -> list:
        return self._route(self.raft.peer_up(peer, now), now)

    def storage_failed(self, problem: str, now: float) -> list:
        """The disk refused a write (``problem`` says which and why): stop
        leading, refuse what needs a write, keep answering the rest."""
        self.storage_problem = problem
        return self._route(self.raft.storage_failed(now), now)

    def storage_recovered(self, now: float) -> list:
        self.storage_problem = None
        return self._route(self.raft.storage_recovered(now), now)

    def tick(self, now: float) -> list:
        return self._route([*self.raft.tick(now), *self.desk.tick(now)], now)

    # --- queries ----------------------------------------------------------------

    def next_deadline(self) -> float:
        desk = self.desk.next_deadline()
        raft = self.raft.next_deadline()
        return raft if desk is None else min(raft, desk)

    def not_leader(self) -> Error:
        leader = self.raft.leader if self.raft.leader != self.me else None
        why = f" ({self.storage_problem})" if self.storage_problem else ""
        return Error(ErrorCode.NOT_LEADER, f"order replica {self.me} does not lead{why}", leader=leader,
                     epoch=self.raft.term)

    def status(self, counters: Counters | None = None) -> ReplicaStatus:
        """The state worth showing: the heartbeat's figures (the simulator
        prints them too), Raft's and the desk's, with the shell's ``counters``."""
        raft, desk, c = self.raft, self.desk, counters or Counters()
        return ReplicaStatus(
            id=self.me, role=raft.role, term=raft.term, leader=raft.leader, commit=raft.commit,
            last_index=raft.log.last_index(), recovering=raft.recovering, down=sorted(raft.down),
            ready=desk.ready, queued=len(desk.queue), awaiting=len(desk.awaiting),
            batch=desk.at_catalog() or None, next_txn=desk.next_txn,
            last_txn=raft.log.last_txn(),
            trades=c.trades, reads=c.reads, bad_requests=c.bad_requests, dropped_sends=c.dropped_sends,
            blank=raft.blank, storage="ok" if self.storage_problem is None else "full",
            storage_detail=self.storage_problem,
        )

    # --- internals ------------------------------------------------------------

    def _route(self, outputs: list, now: float) -> list:
        """Feed Raft's signals to the desk (and the desk's requests back to
        Raft) until only outputs for the shell remain.

        One :class:`Flush` at most, and last: every message of this step (the
        entries for the followers, the next batch for the catalog, replies)
        is on its way before the shell blocks in the fsync."""
        result = []
        flush = None
        work = list(outputs)
        while work:
            item = work.pop(0)
            if isinstance(item, BecameLeader):
                work.extend(self.desk.start(item.term, now))
                result.append(item)
            elif isinstance(item, SteppedDown):
                work.extend(self.desk.stop(self.not_leader()))
                result.append(item)
            elif isinstance(item, Committed):
                work.extend(self.desk.on_commit(item.index))
            elif isinstance(item, ReadConfirmed):
                work.extend(self.desk.on_read_confirmed(item.probe))
            elif isinstance(item, StepDownRequest):
                work.extend(self.raft.step_down(item.term, now))
            elif isinstance(item, Flush):
                flush = item
            else:
                result.append(item)
        if flush is not None:
            result.append(flush)
        return result
