"""Every message Bazaar's nodes exchange, defined once.

Each message is a frozen dataclass whose ``MSG`` names it on the wire. The
encoding (one msgpack map per message, carrying the protocol version) lives in
:mod:`common.codec`; the prose specification, with socket pairs and error
codes, is ``docs/PROTOCOL.md``. A change here is a change of the protocol:
bump :data:`PROTOCOL_VERSION` when an old peer could misread the new form.

Message families:

* catalog service (REQ or DEALER -> catalog ROUTER): :class:`Lookup`,
  :class:`ApplyTrades`, :class:`Fence`, answered by :class:`StockInfo`,
  :class:`TradesApplied`, :class:`Fenced` or :class:`Error`;
* order service (frontend REQ -> replica ROUTER): :class:`PlaceTrade`,
  :class:`GetOrder`, answered by :class:`TradeDone`, :class:`OrderInfo` or
  :class:`Error`;
* replication (replica DEALER -> replica ROUTER): :class:`VoteRequest`,
  :class:`VoteReply`, :class:`AppendEntries`, :class:`AppendReply`;
* the bus (PUB -> broker -> SUB), one topic per family: :class:`Heartbeat`,
  :class:`LeaderAnnouncement`, :class:`StockChanged`, :class:`NodeEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, ClassVar

PROTOCOL_VERSION = 1

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
    STALE_EPOCH = "stale_epoch"
    UNAVAILABLE = "unavailable"


class TradeStatus(StrEnum):
    """How the catalog settled one trade of a batch."""

    OK = "ok"
    NOT_ENOUGH_STOCK = "not_enough_stock"
    STOCK_NOT_FOUND = "stock_not_found"
    KEY_REUSED = "key_reused"


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every wire message; ``MSG`` is its name in the ``msg`` key."""

    MSG: ClassVar[str] = ""


# --- shared ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Error(Message):
    """A request failed. ``leader``/``epoch`` are set on ``not_leader`` and
    ``stale_epoch`` so the caller can find the current leader."""

    MSG: ClassVar[str] = "error"
    code: str
    message: str
    leader: int | None = None
    epoch: int | None = None


# --- catalog --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup(Message):
    """Ask the catalog for one stock."""

    MSG: ClassVar[str] = "lookup"
    name: str


@dataclass(frozen=True, slots=True)
class StockInfo(Message):
    """One stock as the catalog holds it. ``version`` rises with every change of
    this stock; ``seq`` is the catalog's change counter when the row was read."""

    MSG: ClassVar[str] = "stock"
    name: str
    price: float
    quantity: int
    volume: int
    version: int
    seq: int


@dataclass(frozen=True, slots=True)
class TradeItem(Message):
    """One trade inside :class:`ApplyTrades` (also the body of a placed trade)."""

    MSG: ClassVar[str] = "trade_item"
    request_id: str
    name: str
    quantity: int
    side: str


@dataclass(frozen=True, slots=True)
class ApplyTrades(Message):
    """The order leader asks the catalog to apply a batch of trades, in order,
    in one durable transaction. ``epoch`` fences deposed leaders out;
    ``trace`` asks for the catalog's timestamps in the reply (docs/PERFORMANCE.md)."""

    MSG: ClassVar[str] = "apply_trades"
    epoch: int
    batch: int
    trades: list[TradeItem]
    trace: bool = False


@dataclass(frozen=True, slots=True)
class TradeOutcome(Message):
    """The catalog's verdict on one trade. ``seq`` is the catalog change that
    applied it (``None`` unless ``status`` is ``ok``); ``stock`` is the row right
    after the change (``None`` when this is a replay of an earlier result)."""

    MSG: ClassVar[str] = "trade_outcome"
    request_id: str
    status: str
    seq: int | None = None
    stock: StockInfo | None = None


@dataclass(frozen=True, slots=True)
class TradesApplied(Message):
    """Reply to :class:`ApplyTrades`: one outcome per trade, in batch order;
    ``trace`` (when asked) is ``[received, committed, replied]``, monotonic seconds."""

    MSG: ClassVar[str] = "trades_applied"
    batch: int
    outcomes: list[TradeOutcome]
    trace: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Fence(Message):
    """A new order leader fences the catalog at its epoch (older epochs are
    refused from then on) and asks for the applied trades after ``after_seq``."""

    MSG: ClassVar[str] = "fence"
    epoch: int
    after_seq: int
    limit: int


@dataclass(frozen=True, slots=True)
class JournalEntry(Message):
    """One trade the catalog applied, from its durable journal."""

    MSG: ClassVar[str] = "journal_entry"
    seq: int
    request_id: str
    name: str
    quantity: int
    side: str


@dataclass(frozen=True, slots=True)
class Fenced(Message):
    """Reply to :class:`Fence`: applied trades after ``after_seq`` in ``seq``
    order, at most ``limit``; ``more`` says another page follows."""

    MSG: ClassVar[str] = "fenced"
    epoch: int
    entries: list[JournalEntry]
    more: bool


# --- order service --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceTrade(Message):
    """The frontend asks the order leader to carry out one trade. The
    ``request_id`` makes retries safe: the same id always gets the same result.
    ``trace`` asks for the timestamps of every stage in the reply."""

    MSG: ClassVar[str] = "place_trade"
    request_id: str
    name: str
    quantity: int
    side: str
    trace: bool = False


@dataclass(frozen=True, slots=True)
class TradeDone(Message):
    """A trade is durable on a majority of replicas. ``stock`` is the catalog
    row after the trade, when known, so the frontend can refresh its cache.
    ``trace``: stage name -> monotonic seconds, when the request asked."""

    MSG: ClassVar[str] = "trade_done"
    txn: int
    name: str
    quantity: int
    side: str
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
    """The trade carried by a log entry: its transaction number, the client's
    request id, and the catalog change (``seq``) that applied it."""

    MSG: ClassVar[str] = "trade_record"
    txn: int
    request_id: str
    name: str
    quantity: int
    side: str
    seq: int


@dataclass(frozen=True, slots=True)
class LogEntry(Message):
    """One entry of the replicated order log. ``trade`` is ``None`` for the
    no-op entry a new leader appends to commit what earlier leaders left."""

    MSG: ClassVar[str] = "log_entry"
    index: int
    term: int
    trade: TradeRecord | None = None


@dataclass(frozen=True, slots=True)
class VoteRequest(Message):
    """A replica asks for a vote. With ``pre_vote`` it only asks whether it
    would win, without raising anyone's term (Raft's pre-vote)."""

    MSG: ClassVar[str] = "vote_request"
    term: int
    candidate: int
    last_index: int
    last_term: int
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class VoteReply(Message):
    """Answer to :class:`VoteRequest`. ``log_ahead`` says the voter refused
    because its own log is more complete than the candidate's."""

    MSG: ClassVar[str] = "vote_reply"
    term: int
    voter: int
    granted: bool
    pre_vote: bool
    log_ahead: bool = False


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
    ``trace`` (when the request asked) is ``[received, replied]``."""

    MSG: ClassVar[str] = "append_reply"
    term: int
    follower: int
    success: bool
    match_index: int
    hint: int
    probe: int = 0
    trace: list[float] | None = None


# --- bus ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Published by every node every heartbeat interval. ``incarnation`` changes
    on each start; ``status`` holds the node's own figures (PROTOCOL.md lists
    the keys per node)."""

    MSG: ClassVar[str] = "heartbeat"
    node: str
    incarnation: str
    seq: int
    interval_ms: int
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeaderAnnouncement(Message):
    """The order leader says it leads, every heartbeat interval."""

    MSG: ClassVar[str] = "leader"
    leader: int
    epoch: int
    endpoint: str


@dataclass(frozen=True, slots=True)
class StockChanged(Message):
    """The catalog committed a change of one stock (cache invalidation).
    ``seq`` rises by exactly one per change across all stocks."""

    MSG: ClassVar[str] = "stock_changed"
    name: str
    price: float
    quantity: int
    version: int
    seq: int


@dataclass(frozen=True, slots=True)
class NodeEvent(Message):
    """Something worth an operator's attention happened on a node."""

    MSG: ClassVar[str] = "event"
    node: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


MESSAGES: dict[str, type[Message]] = {
    cls.MSG: cls
    for cls in (
        Error, Lookup, StockInfo, TradeItem, ApplyTrades, TradeOutcome, TradesApplied,
        Fence, JournalEntry, Fenced, PlaceTrade, TradeDone, GetOrder, OrderInfo,
        TradeRecord, LogEntry, VoteRequest, VoteReply, AppendEntries, AppendReply,
        Heartbeat, LeaderAnnouncement, StockChanged, NodeEvent,
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
