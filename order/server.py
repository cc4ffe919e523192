"""An order replica's I/O loop: sockets around the pure :class:`Replica`.

Sockets, all owned by the one loop thread::

    router   ROUTER, bound   requests from frontends and the catalog (DEALERs)
                             and every message from the other replicas (their DEALERs)
    peer[p]  DEALER -> p     everything this replica sends to replica p
    bus      PUB -> broker   heartbeats, leader announcements, events

The replica reaches out to nobody but its peers and the bus: frontends
bring it trades, order reads and lookups, and the catalog fetches the
committed entries it projects (a long poll, :class:`order.replica.Feed`).

Peer traffic is one-way per socket: a replica sends requests *and* replies
through its DEALER to the other's ROUTER, so every peer message arrives on the
router and no socket waits for a reply. DEALERs set ``ZMQ_IMMEDIATE``: a
message for a peer that is down is dropped at once (Raft resends), not queued
for its return. Each DEALER carries the socket monitor; a ``disconnected``
event tells the replica its peer's process is gone without waiting for
missed heartbeats, which is what makes failover after a SIGKILL fast.

A DEALER whose peer died redials at ZeroMQ's reconnect interval (100 ms), so
for a moment after the peer restarts its messages to the peer would be
dropped. The router's socket monitor closes that window: when any connection
comes in (a restarted peer dials every replica at once), the DEALERs whose
links are down redial at once.

Every socket runs CURVE: the router is a server whose connections the
replica's ZAP handler (:class:`common.security.Gate`, one more socket of the
same loop) judges; each DEALER and the bus PUB hold the public key of the
one node they dial.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from functools import lru_cache
from pathlib import Path

import zmq

from common import codec, rpc, security, sockets
from common.bus import Publisher
from common.config import Config, load_stocks
from common.errors import RemoteProtocolError, StorageFailed, StorageFull, error_code
from common.heartbeat import Ticker
from common.logs import get_logger
from common.node import DRAIN_LIMIT, Loop, RestartFromDisk, readable, serve
from common.storage import Faults, StorageState
from common.protocol import (
    AppendEntries, AppendReply, CampaignEvent, CaughtUpEvent, Error, ErrorCode, GetOrder, LeaderAnnouncement,
    LeaderChangedEvent, LeaderElectedEvent, Lookup, NodeKind, PeerHello, PlaceTrade, ReadCommitted, SocketEvent,
    StartedEvent, SteppedDownEvent, StockRow, StorageEvent, Topic, TradeDone, VoteReply, VoteRequest,
)

from .desk import ToClient
from .raft import (
    BecameLeader, Campaign, CaughtUp, Flush, LeaderChanged, SendPeer, SteppedDown, Timing, VoteRefused,
)
from .replica import Counters, Replica
from .store import SqliteLog
from .tracer import Tracer

log = get_logger(__name__)

PEER_MESSAGES = (AppendEntries, AppendReply, VoteRequest, VoteReply)
CLIENT_MESSAGES = (PlaceTrade, GetOrder, Lookup, ReadCommitted)
# Test-only crash points (``--failpoint``): the process SIGKILLs itself there,
# on a trade it carried out itself, so a whole cluster can be armed and only
# the leader of the moment dies.
FAILPOINTS = ("before-trade-reply",)


def timing_from(config: Config) -> Timing:
    hb = config.heartbeat
    return Timing(heartbeat_s=hb.interval_s, election_s=hb.window_s, rank_step_s=hb.window_s / 2)


class OrderServer:
    """Replica ``replica_id`` of the order service.

    :param failpoint: one of :data:`FAILPOINTS`, for fault tests only.
    """

    def __init__(self, config: Config, replica_id: int, ctx: zmq.Context, stop: threading.Event, now: float,
                 failpoint: str | None = None, storage_faults: Path | None = None,
                 distrust_after: int | None = None) -> None:
        """:param storage_faults: a trigger file for injected storage failures (fault tests only).
        :param distrust_after: drop the log's entries after this index first (a restart after a failed fsync).
        :raises StorageCorrupt: the replica's data cannot be trusted (it says what to do).
        """
        me = config.replica(replica_id)
        self.me = me
        self.failpoint = failpoint
        keys = security.node_keys(config, me.name)  # missing keys stop the node before it touches its log
        path = config.data_dir / f"{me.name}.sqlite3"
        self.store = SqliteLog(path, node=me.name, cluster_id=config.cluster_id, faults=Faults(storage_faults),
                               distrust_after=distrust_after)
        self.storage = StorageState(path)
        peers = [r for r in config.orders if r.id != me.id]
        genesis = _genesis_reader(config.stocks_csv)
        if self.store.last_index() == 0:
            genesis()  # a new replica may found a cluster: a bad stock list stops it now, not then
        self.replica = Replica(me.id, [p.id for p in peers], self.store, timing_from(config), now, genesis)
        self.loop = Loop(stop)
        # The gate first: no server socket binds before its ZAP handler is there.
        self.gate = security.Gate(ctx, keys, lambda event: self.bus.event(event, warn=True))
        self.gate.attach(self.loop)
        self.router = sockets.make_socket(ctx, zmq.ROUTER, curve=self.gate.server("router"))
        self.router.bind(me.endpoint.bind)
        self.loop.add(self.router, self.on_router)
        self.peers: dict[int, zmq.Socket] = {}
        self.peer_by_endpoint: dict[str, int] = {}
        self.unreached: set[int] = set()  # peers whose last connection attempt failed or dropped
        self.loop.watch(self.router, "router", self.on_router_event)
        for peer in peers:
            sock = sockets.make_socket(ctx, zmq.DEALER, immediate=True, identity=me.name,
                                       curve=self.gate.client(peer.name))
            sock.connect(peer.endpoint.connect)
            self.peers[peer.id] = sock
            self.peer_by_endpoint[peer.endpoint.connect] = peer.id
            self.loop.add(sock, lambda sock=sock: self.drain_peer(sock))
            self.loop.watch(sock, f"peer-{peer.id}", self.on_socket_event)
        self.bus = Publisher(ctx, config.broker.xsub.connect, me.name, NodeKind.REPLICA,
                             config.heartbeat.interval_ms, curve=self.gate.client("broker"))
        self.loop.watch(self.bus.sock, "bus", self.on_socket_event)
        self.beat = Ticker(config.heartbeat.interval_s, now)
        self.counters = Counters()
        self.tracer = Tracer()
        log.info("order replica ready", id=me.id, endpoint=me.endpoint.bind, term=self.replica.raft.term,
                 last_index=self.store.last_index(), applied=self.replica.book.applied, failpoint=failpoint)

    # --- life cycle -------------------------------------------------------------

    def run(self) -> None:
        serve(self.loop, self.bus, self.tick, self.store.close,
              StartedEvent(self.me.name, last_index=self.store.last_index(), term=self.replica.raft.term))

    def tick(self, now: float) -> float:
        self.execute(self._guard(self.replica.tick, now))
        if self.storage.probe_due(now):
            self._probe_storage(now)
        if self.beat.due(now):
            self.heartbeat()
        return max(0.0, min(self.replica.next_deadline() - now, self.beat.remaining(now)))

    def heartbeat(self) -> None:
        raft = self.replica.raft
        self.bus.heartbeat(dataclasses.replace(self.replica.status(self.counters), auth=self.gate.status()))
        if raft.is_leader():
            self.bus.publish(Topic.LEADER, LeaderAnnouncement(
                leader=self.me.id, epoch=raft.term, endpoint=self.me.endpoint.connect, commit=raft.commit,
            ))

    # --- inputs -----------------------------------------------------------------

    def on_router(self) -> None:
        now = time.monotonic()
        for got in rpc.pending_requests(self.router, DRAIN_LIMIT):
            if got is None:
                self.counters.bad_requests += 1
                continue
            envelope, msg = got
            if isinstance(msg, RemoteProtocolError):
                self.counters.bad_requests += 1
                log.warning("bad request", error=str(msg))
                rpc.send_reply(self.router, envelope, Error(error_code(msg), str(msg)))
            elif isinstance(msg, PEER_MESSAGES + (PeerHello,)):
                self.tracer.from_peer(msg, now)
                self.execute(self._guard(self.replica.on_peer, msg, now))
            elif isinstance(msg, CLIENT_MESSAGES):
                expires = None
                if isinstance(msg, PlaceTrade):
                    self.counters.trades += 1
                    self.tracer.on_place(envelope, msg, now)
                    if msg.deadline_ms:  # the frontend's wall-clock deadline, on our monotonic clock
                        expires = now + (msg.deadline_ms / 1000 - time.time())
                elif isinstance(msg, Lookup):
                    self.counters.lookups += 1
                elif isinstance(msg, GetOrder):
                    self.counters.reads += 1
                self.execute(self._guard(self.replica.on_client, envelope, msg, now, expires))
            else:
                self.counters.bad_requests += 1
                rpc.send_reply(self.router, envelope, Error(
                    ErrorCode.BAD_REQUEST, f"{msg.MSG!r} is not an order-service request"))
        # Every trade read above leaves in one append per follower and one fsync (group commit).
        self.execute(self._guard(self.replica.replicate, time.monotonic()))

    def drain_peer(self, sock: zmq.Socket) -> None:
        """Peers answer on their own DEALERs, never on ours: what arrives here
        is an error reply to something malformed we sent. Log it, drop it."""
        for _ in range(DRAIN_LIMIT):
            if not readable(sock):
                return
            frames = sock.recv_multipart(zmq.NOBLOCK)
            log.warning("a peer refused a message", reply=frames[-1][:200])

    def on_socket_event(self, label: str, event: str, endpoint: str) -> None:
        self.bus.event(SocketEvent(self.me.name, socket=label, event=event, endpoint=endpoint))
        peer = self.peer_by_endpoint.get(endpoint) if label.startswith("peer-") else None
        if peer is None:
            return
        if event in ("disconnected", "connect_retried"):
            self.unreached.add(peer)
        elif event == "connected":
            self.unreached.discard(peer)
        if event == "disconnected":
            self.execute(self.replica.peer_down(peer, time.monotonic()))
        elif event == "handshake_succeeded":
            self.execute(self.replica.peer_up(peer, time.monotonic()))

    def on_router_event(self, label: str, event: str, endpoint: str) -> None:
        """Someone dialled in: a peer that was down may be back. Redial the
        peers we could not reach now rather than at the next reconnect
        interval (their ROUTERs hand the routing id over to the new
        connection). Not published: the dialling side reports its own links;
        but a failed handshake (a client without the cluster's keys) is, and
        the gate counts it."""
        if event in security.FAILED_HANDSHAKES:
            self.gate.on_socket_event(label, event, endpoint)
            self.bus.event(SocketEvent(self.me.name, socket=label, event=event, endpoint=endpoint))
        if event != "accepted":
            return
        for peer_endpoint, peer in self.peer_by_endpoint.items():
            if peer in self.unreached:
                self.unreached.discard(peer)
                sock = self.peers[peer]
                try:
                    sock.disconnect(peer_endpoint)
                except zmq.ZMQError:
                    pass
                sock.connect(peer_endpoint)

    # --- outputs ----------------------------------------------------------------

    def execute(self, outputs: list) -> None:
        tracer = self.tracer
        for out in outputs:
            if isinstance(out, SendPeer):
                msg = tracer.to_peer(out.msg, time.monotonic()) if tracer.active else out.msg
                self._send(self.peers.get(out.peer), msg)
            elif isinstance(out, ToClient):
                if self.failpoint == "before-trade-reply" and isinstance(out.msg, TradeDone) and self._own(out.msg):
                    self._crash("a trade committed but its reply was not sent")
                msg = tracer.to_client(out.ref, out.msg, time.monotonic()) if tracer.active else out.msg
                rpc.send_reply(self.router, out.ref, msg)
            elif isinstance(out, Flush):
                # The sends above are on their way; now our own fsync, in parallel with theirs.
                if not self._guard(self.store.flush, default=False):
                    continue
                now = time.monotonic()
                if tracer.active:
                    tracer.flushed(self.store.last_index(), now)
                self.execute(self.replica.flushed(now))
            elif isinstance(out, BecameLeader):
                self.bus.event(LeaderElectedEvent(self.me.name, leader=self.me.id, epoch=out.term,
                                                  last_index=self.store.last_index()))
                self.heartbeat()
            elif isinstance(out, SteppedDown):
                self.bus.event(SteppedDownEvent(self.me.name, epoch=out.term))
            elif isinstance(out, LeaderChanged):
                self.bus.event(LeaderChangedEvent(self.me.name, leader=out.leader, epoch=out.term))
            elif isinstance(out, CaughtUp):
                self.bus.event(CaughtUpEvent(self.me.name, index=out.index, leader=self.replica.raft.leader))
            elif isinstance(out, Campaign):
                self.bus.event(CampaignEvent(self.me.name, epoch=out.term, pre_vote=out.pre_vote,
                                             last_index=self.store.last_index()))
            elif isinstance(out, VoteRefused):
                log.info("vote refused", voter=out.voter, epoch=out.term, pre_vote=out.pre_vote,
                         log_ahead=out.log_ahead)
            else:  # a new output type the shell was not taught: a bug, never to be dropped silently
                raise TypeError(f"the order server cannot carry out {out!r}")

    def _send(self, sock: zmq.Socket | None, msg) -> None:
        if sock is None:
            return
        try:
            sock.send_multipart([b"", codec.encode(msg)], zmq.NOBLOCK)
        except zmq.Again:
            self.counters.dropped_sends += 1

    # --- storage ----------------------------------------------------------------

    def _guard(self, work, *args, default=()):
        """Run ``work``; a storage failure in it is handled here, once.

        A full disk refuses what needs a write (a leader steps down) and the
        replica goes on serving the rest; a failed write or fsync makes it
        restart from what the disk holds, distrusting what came after its
        last good sync (:class:`common.node.RestartFromDisk`).

        :returns: what ``work`` returned, ``default`` after a full disk, and
            True for a ``work`` that returns None.
        """
        try:
            result = work(*args)
        except StorageFull as exc:
            self._storage_full(exc)
            return [] if default == () else default
        except StorageFailed as exc:
            self.bus.event(StorageEvent(self.me.name, state="failed", detail=str(exc)), warn=True)
            raise RestartFromDisk(str(exc), ["--distrust-after", str(self.store.synced_index)]) from None
        return True if result is None else result

    def _storage_full(self, exc: StorageFull) -> None:
        now = time.monotonic()
        if self.storage.full(exc, now):
            self.bus.event(StorageEvent(self.me.name, state="full", detail=str(exc)), warn=True)
        self.execute(self.replica.storage_failed(f"order-{self.me.id}: {exc}", now))

    def _probe_storage(self, now: float) -> None:
        """The disk was full: try a small write (the hard state again)."""
        raft = self.replica.raft
        try:
            self.store.save_hard_state(raft.term, raft.voted_for)
        except StorageFull as exc:
            self.storage.full(exc, now)
            return
        except StorageFailed as exc:
            raise RestartFromDisk(str(exc), ["--distrust-after", str(self.store.synced_index)]) from None
        self.storage.recovered()
        self.bus.event(StorageEvent(self.me.name, state="ok", detail=f"{self.store.path} takes writes again"))
        self.execute(self.replica.storage_recovered(now))

    def _own(self, done: TradeDone) -> bool:
        """Whether this replica decided the trade itself, in the term it leads now."""
        entry = self.store.by_txn(done.txn)
        return entry is not None and entry.term == self.replica.raft.term

    def _crash(self, why: str) -> None:
        log.warning("failpoint: killing myself", failpoint=self.failpoint, why=why)
        os.kill(os.getpid(), signal.SIGKILL)


def _genesis_reader(path: Path):
    """The initial stocks, read from the CSV at the first call only."""

    @lru_cache(maxsize=1)
    def genesis() -> list[StockRow]:
        return [StockRow(*row) for row in load_stocks(path)]

    return genesis
