"""Every message Bazaar's nodes exchange, defined once.

Each message is a frozen dataclass whose ``MSG`` names it on the wire. The
encoding (one msgpack map per message, carrying the protocol version) lives in
:mod:`common.codec`; the prose specification, with socket pairs and error
codes, is ``docs/PROTOCOL.md``. A change here is a change of the protocol:
bump :data:`PROTOCOL_VERSION` when an old peer could misread the new form.

Message families:

* lookups (frontend DEALER -> catalog ROUTER, or -> an order replica's ROUTER
  when the catalog is down or behind): :class:`Lookup`, answered by
  :class:`StockInfo` or :class:`Error`;
* order service (frontend DEALER -> replica ROUTER): :class:`PlaceTrade`,
  :class:`GetOrder`, answered by :class:`TradeDone`, :class:`OrderInfo` or
  :class:`Error`;
* the catalog's feed (catalog DEALER -> replica ROUTER): :class:`ReadCommitted`,
  answered by :class:`CommittedEntries`;
* replication (replica DEALER -> replica ROUTER): :class:`VoteRequest`,
  :class:`VoteReply`, :class:`AppendEntries` (of :class:`LogEntry`: the
  genesis's :class:`StockRow` list, a :class:`TradeRecord`, or a no-op),
  :class:`AppendReply`, :class:`PeerHello`;
* the bus (PUB -> broker -> SUB), one topic per family: :class:`Heartbeat`
  (carrying the sender's :class:`NodeKind` and its status:
  :class:`ReplicaStatus`, :class:`CatalogStatus`, :class:`FrontendStatus` or
  :class:`BrokerStatus`, the first two and the last with an :class:`AuthStatus`),
  :class:`LeaderAnnouncement`, :class:`StockChanges` (the stocks the catalog
  changed by applying a run of log entries), and one class per
  event kind (each a :class:`NodeEvent`): :class:`StartedEvent`,
  :class:`StoppingEvent`, :class:`SocketEvent`, :class:`LeaderElectedEvent`,
  :class:`SteppedDownEvent`, :class:`LeaderChangedEvent`,
  :class:`CaughtUpEvent`, :class:`CampaignEvent`, :class:`CacheFlushedEvent`,
  :class:`AuthRefusedEvent`, :class:`StorageEvent`.

Every socket between nodes runs CurveZMQ (docs/PROTOCOL.md, "Security"),
beneath these messages: the codec never sees a key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar

# 2: heartbeats carry a kind and a typed status instead of a free map; each
# event kind is a message of its own instead of "event" with a free detail map.
# 3: one log: the order log is the only store of trades and the catalog its
# projection (ReadCommitted/CommittedEntries; the genesis entry; refusals
# logged; versions are log indices); ApplyTrades, Fence and the catalog's
# journal are gone.
PROTOCOL_VERSION = 3

# Limits every node enforces on input (docs/PROTOCOL.md, "Limits").
MAX_TRADE_QUANTITY = 1_000_000
MAX_NAME_LENGTH = 64
MAX_REQUEST_ID_LENGTH = 128
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SIDES = ("buy", "sell")


class Topic(bytes, Enum):
    """Bus topics: the first frame of every published message."""

    HEARTBEAT = b"hb"
    LEADER = b"leader"
    STOCK = b"stock"
    EVENT = b"event"


class ErrorCode(StrEnum):
    """The ``code`` of an :class:`Error` reply."""

    BAD_REQUEST = "bad_request"
    VERSION = "unsupported_version"
    STOCK_NOT_FOUND = "stock_not_found"
    NOT_ENOUGH_STOCK = "not_enough_stock"
    ORDER_NOT_FOUND = "order_not_found"
    KEY_REUSED = "key_reused"
    NOT_LEADER = "not_leader"
    BEHIND = "behind"
    DEADLINE = "deadline_passed"
    UNAVAILABLE = "unavailable"
    STORAGE = "storage_unavailable"


class TradeStatus(StrEnum):
    """How a trade was decided. A log entry holds ``ok`` (carried out, with a
    transaction number) or ``not_enough_stock`` (refused: the refusal is
    replicated too, so that a retry gets it back); the others are answered
    without an entry."""

    OK = "ok"
    NOT_ENOUGH_STOCK = "not_enough_stock"
    STOCK_NOT_FOUND = "stock_not_found"
    KEY_REUSED = "key_reused"


class NodeKind(StrEnum):
    """What a node is, as its :class:`Heartbeat` says."""

    BROKER = "broker"
    CATALOG = "catalog"
    REPLICA = "replica"
    FRONTEND = "frontend"


class ReplicaRole(StrEnum):
    """An order replica's Raft role (``order.raft`` calls it ``Role``)."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every wire message; ``MSG`` is its name in the ``msg`` key."""

    MSG: ClassVar[str] = ""


# --- shared ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Error(Message):
    """A request failed. ``leader``/``epoch`` are set on ``not_leader`` so
    the caller can find the current leader; ``index`` on ``behind``: how far
    the node that answered has applied the log."""

    MSG: ClassVar[str] = "error"
    code: str
    message: str
    leader: int | None = None
    epoch: int | None = None
    index: int | None = None


# --- lookups ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup(Message):
    """Ask the catalog (or an order replica) for one stock, as of log index
    ``min_index`` or later: a node that has applied less answers ``behind``."""

    MSG: ClassVar[str] = "lookup"
    name: str
    min_index: int = 0


@dataclass(frozen=True, slots=True)
class StockInfo(Message):
    """One stock as the fold of the log up to ``index`` holds it. ``version``
    is the index of the entry that last changed it."""

    MSG: ClassVar[str] = "stock"
    name: str
    price: float
    quantity: int
    volume: int
    version: int
    index: int


# --- order service --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceTrade(Message):
    """The frontend asks the order leader to carry out one trade. The
    ``request_id`` makes retries safe: the same id always gets the same result.
    ``deadline_ms``: Unix time, in milliseconds, after which the frontend has
    given up; a trade not yet proposed by then is dropped, never carried out
    (0: no deadline). ``trace`` asks for the timestamps of every stage in the reply."""

    MSG: ClassVar[str] = "place_trade"
    request_id: str
    name: str
    quantity: int
    side: str
    deadline_ms: int = 0
    trace: bool = False


@dataclass(frozen=True, slots=True)
class TradeDone(Message):
    """A trade is durable on a majority of replicas: its entry is ``index``.
    ``stock`` is the stock as the committed log stands when the reply leaves
    (this trade included), so the frontend shows it at once.
    ``trace``: stage name -> monotonic seconds, when the request asked."""

    MSG: ClassVar[str] = "trade_done"
    txn: int
    name: str
    quantity: int
    side: str
    index: int = 0
    stock: StockInfo | None = None
    trace: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class GetOrder(Message):
    """Ask the order leader for a committed order by transaction number."""

    MSG: ClassVar[str] = "get_order"
    txn: int


@dataclass(frozen=True, slots=True)
class OrderInfo(Message):
    """One committed order."""

    MSG: ClassVar[str] = "order"
    txn: int
    name: str
    quantity: int
    side: str


# --- replication ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeRecord(Message):
    """The trade carried by a log entry, as the leader decided it: carried out
    (``status`` ok, with its transaction number ``txn``) or refused for want
    of stock (``not_enough_stock``, no number). The request id makes a retry
    find it."""

    MSG: ClassVar[str] = "trade_record"
    request_id: str
    name: str
    quantity: int
    side: str
    txn: int | None = None
    status: TradeStatus = TradeStatus.OK


@dataclass(frozen=True, slots=True)
class StockRow(Message):
    """One initial stock, in the genesis entry."""

    MSG: ClassVar[str] = "stock_row"
    name: str
    price: float
    quantity: int
    volume: int


@dataclass(frozen=True, slots=True)
class LogEntry(Message):
    """One entry of the replicated order log: the genesis (``genesis``, the
    initial stocks; entry 1 and no other), a trade (``trade``), or, with
    neither, the no-op a new leader appends to commit what earlier leaders left."""

    MSG: ClassVar[str] = "log_entry"
    index: int
    term: int
    trade: TradeRecord | None = None
    genesis: list[StockRow] | None = None


# --- the catalog's feed -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadCommitted(Message):
    """The catalog asks a replica for committed entries after ``after``, at
    most ``limit``. With none to give, the replica holds the request up to
    ``wait_ms`` and answers as soon as more commit (a long poll)."""

    MSG: ClassVar[str] = "read_committed"
    after: int
    limit: int
    wait_ms: int = 0


@dataclass(frozen=True, slots=True)
class CommittedEntries(Message):
    """Reply to :class:`ReadCommitted`: committed entries from ``after + 1``,
    in order, none left out (empty when the wait ran out); ``commit`` is the
    replica's commit index, ``leader`` who it believes leads."""

    MSG: ClassVar[str] = "committed_entries"
    entries: list[LogEntry]
    commit: int
    leader: int | None = None


@dataclass(frozen=True, slots=True)
class VoteRequest(Message):
    """A replica asks for a vote. With ``pre_vote`` it only asks whether it
    would win, without raising anyone's term (Raft's pre-vote). ``blank``: the
    candidate's data is new (a new cluster, or a lost disk)."""

    MSG: ClassVar[str] = "vote_request"
    term: int
    candidate: int
    last_index: int
    last_term: int
    pre_vote: bool
    blank: bool = False


@dataclass(frozen=True, slots=True)
class VoteReply(Message):
    """Answer to :class:`VoteRequest`. ``log_ahead`` says the voter refused
    because its own log is more complete than the candidate's; ``blank`` that
    the voter's data is new."""

    MSG: ClassVar[str] = "vote_reply"
    term: int
    voter: int
    granted: bool
    pre_vote: bool
    log_ahead: bool = False
    blank: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries(Message):
    """The leader replicates entries (or, empty, asserts its leadership).
    ``probe`` numbers the leader's heartbeat rounds; the reply echoes it, which
    lets the leader confirm it still leads before answering a read.
    ``trace`` asks the follower for its timestamps."""

    MSG: ClassVar[str] = "append_entries"
    term: int
    leader: int
    prev_index: int
    prev_term: int
    entries: list[LogEntry]
    commit: int
    probe: int = 0
    trace: bool = False


@dataclass(frozen=True, slots=True)
class AppendReply(Message):
    """Answer to :class:`AppendEntries`. On success ``match_index`` is the last
    index known equal to the leader's; on failure ``hint`` is where to retry.
    ``trace`` (when the request asked) is ``[received, replied]``; ``blank``:
    the follower's data is new and it has not caught up yet, so it counts
    toward no majority; ``last``: the follower's last log index (a log
    shorter than what it acknowledged lost data)."""

    MSG: ClassVar[str] = "append_reply"
    term: int
    follower: int
    success: bool
    match_index: int
    hint: int
    probe: int = 0
    trace: list[float] | None = None
    blank: bool = False
    last: int | None = None


@dataclass(frozen=True, slots=True)
class PeerHello(Message):
    """A replica tells a peer who it is as soon as their connection is up.
    ``blank``: its data is new (a new cluster, or a lost disk); replicas learn
    whether the whole cluster is new before anyone votes."""

    MSG: ClassVar[str] = "peer_hello"
    replica: int
    term: int
    blank: bool


# --- bus ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthStatus(Message):
    """What a node's CurveZMQ gate saw since the process started, inside the
    status of every node that accepts connections (broker, catalog, replicas).
    ``curve`` is False when the node runs without CURVE (for debugging only);
    ``refused`` counts the connections its ZAP handler refused (a CURVE key
    that is not the cluster's); ``failed_handshakes`` those that failed
    before the ZAP handler was asked (no key, another mechanism, a client
    that does not hold this node's public key, or a peer that died in the
    middle of its handshake)."""

    MSG: ClassVar[str] = "auth_status"
    curve: bool
    refused: int
    failed_handshakes: int


@dataclass(frozen=True, slots=True)
class ReplicaStatus(Message):
    """An order replica's figures, in its heartbeat: Raft's (``id``, ``role``,
    ``term``, ``leader``, ``commit``, ``last_index``, ``recovering``,
    ``down``), its book's ``applied`` index, the trading desk's (``ready``,
    ``queued``, ``awaiting``, ``next_txn``), its log's ``last_txn``, counters
    since the process started (``trades``, ``reads``, ``lookups``,
    ``bad_requests``, ``dropped_sends``) and its ``auth`` gate's."""

    MSG: ClassVar[str] = "replica_status"
    KIND: ClassVar[NodeKind] = NodeKind.REPLICA
    id: int
    role: ReplicaRole
    term: int
    commit: int
    last_index: int
    recovering: bool
    down: list[int]
    ready: bool
    queued: int
    awaiting: int
    next_txn: int
    last_txn: int
    trades: int
    reads: int
    bad_requests: int
    dropped_sends: int
    leader: int | None = None
    applied: int = 0
    lookups: int = 0
    blank: bool = False
    storage: str = "ok"
    storage_detail: str | None = None
    auth: AuthStatus | None = None


@dataclass(frozen=True, slots=True)
class CatalogStatus(Message):
    """The catalog's figures, in its heartbeat: the log index it has applied,
    the commit index the replicas last told it (``commit``; the difference is
    its lag), the replica it reads from (``source``), and counters since the
    process started (its ``auth`` gate's too)."""

    MSG: ClassVar[str] = "catalog_status"
    KIND: ClassVar[NodeKind] = NodeKind.CATALOG
    applied: int
    commit: int
    lookups: int
    trades: int
    bad_requests: int
    behind: int = 0
    source: int | None = None
    storage: str = "ok"
    storage_detail: str | None = None
    auth: AuthStatus | None = None


@dataclass(frozen=True, slots=True)
class BrokerStatus(Message):
    """The broker's figures, in its heartbeat: its ``auth`` gate's, for both
    sides of the proxy."""

    MSG: ClassVar[str] = "broker_status"
    KIND: ClassVar[NodeKind] = NodeKind.BROKER
    auth: AuthStatus


@dataclass(frozen=True, slots=True)
class CacheStatus(Message):
    """A frontend's lookup cache (inside :class:`FrontendStatus`)."""

    MSG: ClassVar[str] = "cache_status"
    size: int
    capacity: int
    streaming: bool
    hits: int
    misses: int
    bypassed: int
    installs: int
    stale_refused: int
    invalidations: int
    evictions: int
    flushes: int
    hit_rate: float
    stream_seq: int | None = None


@dataclass(frozen=True, slots=True)
class LeaderBelief(Message):
    """Which replica a frontend believes leads, at which epoch (inside
    :class:`FrontendStatus`)."""

    MSG: ClassVar[str] = "leader_belief"
    epoch: int
    leader: int | None = None


@dataclass(frozen=True, slots=True)
class BackendStatus(Message):
    """A frontend's calls to the backends, counted since it started (inside
    :class:`FrontendStatus`); ``replica_lookups``: lookups an order replica
    answered because the catalog was down or behind."""

    MSG: ClassVar[str] = "backend_status"
    catalog_calls: int
    order_calls: int
    retries: int
    unavailable: int
    timeouts: int = 0
    replica_lookups: int = 0


@dataclass(frozen=True, slots=True)
class FrontendStatus(Message):
    """A frontend's figures, in its heartbeat and (as JSON) in ``GET /stats``.
    ``cache`` is None when the frontend runs without a cache; ``heard`` maps
    every node it hears on the bus to the seconds since its last heartbeat;
    ``curve`` is False when it talks to the backends without CURVE (debugging only)."""

    MSG: ClassVar[str] = "frontend_status"
    KIND: ClassVar[NodeKind] = NodeKind.FRONTEND
    node: str
    leader: LeaderBelief
    backend: BackendStatus
    heard: dict[str, float]
    cache: CacheStatus | None = None
    curve: bool = True


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Published by every node every heartbeat interval. ``incarnation`` changes
    on each start; ``kind`` says what the node is, and the status of that kind
    (``replica``, ``catalog``, ``frontend`` or ``broker``) holds its figures."""

    MSG: ClassVar[str] = "heartbeat"
    node: str
    incarnation: str
    seq: int
    interval_ms: int
    kind: NodeKind
    replica: ReplicaStatus | None = None
    catalog: CatalogStatus | None = None
    frontend: FrontendStatus | None = None
    broker: BrokerStatus | None = None


@dataclass(frozen=True, slots=True)
class LeaderAnnouncement(Message):
    """The order leader says it leads, every heartbeat interval."""

    MSG: ClassVar[str] = "leader"
    leader: int
    epoch: int
    endpoint: str
    commit: int = 0


@dataclass(frozen=True, slots=True)
class StockChanged(Message):
    """One stock as the catalog holds it after a change (cache invalidation);
    ``version`` is the index of the entry that changed it."""

    MSG: ClassVar[str] = "stock_changed"
    name: str
    price: float
    quantity: int
    version: int


@dataclass(frozen=True, slots=True)
class StockChanges(Message):
    """The catalog applied the log entries ``prev + 1`` to ``index`` and
    committed them: every stock they changed, as it ends. The catalog's
    messages chain (each ``prev`` is the last one's ``index``), so a
    subscriber sees a gap."""

    MSG: ClassVar[str] = "stock_changes"
    prev: int
    index: int
    changes: list[StockChanged]


@dataclass(frozen=True, slots=True)
class NodeEvent(Message):
    """Something worth an operator's attention happened on ``node`` (topic
    ``event``). Not a message itself: each kind of event is a subclass, whose
    ``MSG`` is the kind."""

    node: str

    def details(self) -> dict[str, Any]:
        """The event's fields but ``node``, leaving out those that are None
        (for a log line or the monitor's feed)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "node" and getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class StartedEvent(NodeEvent):
    """The node started. The catalog says the log index it has applied
    (``applied``), a replica its log's ``last_index`` and ``term``, a frontend
    whether it runs a ``cache``; the broker says nothing more."""

    MSG: ClassVar[str] = "started"
    applied: int | None = None
    last_index: int | None = None
    term: int | None = None
    cache: bool | None = None


@dataclass(frozen=True, slots=True)
class StoppingEvent(NodeEvent):
    """The node is shutting down cleanly; its sockets close next."""

    MSG: ClassVar[str] = "stopping"


@dataclass(frozen=True, slots=True)
class SocketEvent(NodeEvent):
    """One ZeroMQ socket-monitor event (``event``, e.g. ``disconnected``) of
    the node's socket labelled ``socket``, about ``endpoint``."""

    MSG: ClassVar[str] = "socket"
    socket: str
    event: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class LeaderElectedEvent(NodeEvent):
    """A replica won an election: it leads ``epoch`` (``leader`` is its id)."""

    MSG: ClassVar[str] = "leader_elected"
    leader: int
    epoch: int
    last_index: int


@dataclass(frozen=True, slots=True)
class SteppedDownEvent(NodeEvent):
    """A replica stopped leading; ``epoch`` is its term now."""

    MSG: ClassVar[str] = "stepped_down"
    epoch: int


@dataclass(frozen=True, slots=True)
class LeaderChangedEvent(NodeEvent):
    """A replica learned of another leader (``leader``, None if it knows of
    none) at ``epoch``."""

    MSG: ClassVar[str] = "leader_changed"
    epoch: int
    leader: int | None = None


@dataclass(frozen=True, slots=True)
class CaughtUpEvent(NodeEvent):
    """A starting replica holds what its leader had committed (up to ``index``)."""

    MSG: ClassVar[str] = "caught_up"
    index: int
    leader: int | None = None


@dataclass(frozen=True, slots=True)
class CampaignEvent(NodeEvent):
    """A replica asks for votes for ``epoch`` (a pre-vote first)."""

    MSG: ClassVar[str] = "campaign"
    epoch: int
    pre_vote: bool
    last_index: int


@dataclass(frozen=True, slots=True)
class CacheFlushedEvent(NodeEvent):
    """A frontend emptied its cache, for ``reason``; ``flushes`` counts them since it started."""

    MSG: ClassVar[str] = "cache_flushed"
    reason: str
    flushes: int


@dataclass(frozen=True, slots=True)
class AuthRefusedEvent(NodeEvent):
    """The node's ZAP handler refused a connection to its socket ``socket``
    from ``address`` that presented the CURVE public key ``key`` (Z85 text),
    for ``reason``. ``repeated`` counts the same refusals (same address and
    key) since the last such event, which are not each reported."""

    MSG: ClassVar[str] = "auth_refused"
    socket: str
    address: str
    key: str
    reason: str
    repeated: int = 0


@dataclass(frozen=True, slots=True)
class StorageEvent(NodeEvent):
    """The node's storage changed state (``state``: ``ok``, ``full`` or
    ``failed``; ``detail`` names the file and the free space or the error)."""

    MSG: ClassVar[str] = "storage"
    state: str
    detail: str


EVENTS: tuple[type[NodeEvent], ...] = (
    StartedEvent, StoppingEvent, SocketEvent, LeaderElectedEvent, SteppedDownEvent, LeaderChangedEvent,
    CaughtUpEvent, CampaignEvent, CacheFlushedEvent, AuthRefusedEvent, StorageEvent,
)


MESSAGES: dict[str, type[Message]] = {
    cls.MSG: cls
    for cls in (
        Error, Lookup, StockInfo, PlaceTrade, TradeDone, GetOrder, OrderInfo,
        TradeRecord, StockRow, LogEntry, ReadCommitted, CommittedEntries,
        VoteRequest, VoteReply, AppendEntries, AppendReply, PeerHello,
        AuthStatus, ReplicaStatus, CatalogStatus, BrokerStatus, CacheStatus, LeaderBelief, BackendStatus,
        FrontendStatus,
        Heartbeat, LeaderAnnouncement, StockChanged, StockChanges, *EVENTS,
    )
}


def trade_problem(request_id: str | None, name: str, quantity: int, side: str, *,
                  side_field: str = "side") -> str | None:
    """Why a trade's fields break the protocol's limits, or None if they don't.

    Every node that accepts a trade checks it with this one function (the
    frontend too, for ``POST /orders``, where the side is called ``type``).

    The types are checked too (the codec already has for messages; a JSON body
    may hold anything), in field order: name, quantity, side, request id.

    :param request_id: None to skip its check (the frontend checks its header itself).
    :param side_field: what the message calls the side.
    """
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        return f"name must be a string of 1 to {MAX_NAME_LENGTH} characters"
    if type(quantity) is not int:
        return "quantity must be an integer"
    if quantity <= 0:
        return "quantity must be a positive integer"
    if quantity > MAX_TRADE_QUANTITY:
        return f"quantity must be at most {MAX_TRADE_QUANTITY}"
    if side not in SIDES:
        return f'{side_field} must be "buy" or "sell"'
    if request_id is not None and not 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH:
        return f"request_id must be 1 to {MAX_REQUEST_ID_LENGTH} characters"
    return None
