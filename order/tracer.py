"""Timestamps of traced trades at an order replica (:mod:`common.trace`).

Tracing lives in the I/O shell, not in the pure state machines: the shell
knows the time at each step (the machines see one ``now`` per call) and
passes every input and output through here. A leader stamps a traced trade
when it arrives, when its log entry goes to the followers, when the
leader's own fsync and the first follower's acknowledgement are done, and
when the reply leaves; the follower's stamps come back in its
``AppendReply``. A follower answers a traced ``AppendEntries`` with its own
two stamps.

While no traced trade is in flight, every hook returns at its first test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common.protocol import AppendEntries, AppendReply, PlaceTrade, TradeDone

# Traced trades kept at most (the oldest go first): a trace that never ends
# (its trade was refused, or the leader stepped down) must not pile up.
MAX_TRACED = 1000


@dataclass
class _Traced:
    ref: tuple
    stamps: dict[str, float] = field(default_factory=dict)
    index: int | None = None


class Tracer:
    """The traced trades of one replica."""

    def __init__(self) -> None:
        self._by_request: dict[str, _Traced] = {}
        self._by_ref: dict[tuple, str] = {}
        self._follower_recv: float | None = None

    # --- the leader -------------------------------------------------------------

    def on_place(self, ref: Any, msg: PlaceTrade, now: float) -> None:
        if not msg.trace or msg.request_id in self._by_request:
            return
        if len(self._by_request) >= MAX_TRACED:
            oldest = next(iter(self._by_request))
            self._by_ref.pop(self._by_request.pop(oldest).ref, None)
        key = tuple(ref)
        self._by_request[msg.request_id] = _Traced(key, {"ld_recv": now})
        self._by_ref[key] = msg.request_id

    def to_peer(self, msg, now: float):
        """A message for a peer: entries of traced trades ask the follower for
        its stamps; a reply to a traced request carries ours."""
        if isinstance(msg, AppendReply) and self._follower_recv is not None:
            msg = dataclasses.replace(msg, trace=[self._follower_recv, now])
            self._follower_recv = None
            return msg
        if not self._by_request or not isinstance(msg, AppendEntries) or not msg.entries:
            return msg
        traced = False
        for entry in msg.entries:
            trade = None if entry.trade is None else self._by_request.get(entry.trade.request_id)
            if trade is not None:
                trade.index = entry.index
                trade.stamps.setdefault("ld_repl_out", now)
                traced = True
        return dataclasses.replace(msg, trace=True) if traced else msg

    def flushed(self, durable: int, now: float) -> None:
        """The leader's own log is durable up to ``durable``."""
        for trade in self._by_request.values():
            if trade.index is not None and trade.index <= durable:
                trade.stamps.setdefault("ld_synced", now)

    def from_peer(self, msg, now: float) -> None:
        if isinstance(msg, AppendEntries):
            self._follower_recv = now if msg.trace else None
            return
        if not self._by_request or not isinstance(msg, AppendReply) or not msg.success or not msg.trace:
            return
        for trade in self._by_request.values():
            if trade.index is not None and trade.index <= msg.match_index and "ld_ack_in" not in trade.stamps:
                trade.stamps["ld_ack_in"] = now
                trade.stamps["fo_recv"], trade.stamps["fo_replied"] = msg.trace[0], msg.trace[-1]

    def to_client(self, ref: Any, msg, now: float):
        """A reply to a frontend: a traced trade's carries every stamp (a
        refusal ends its trace without any)."""
        if not self._by_ref:
            return msg
        request_id = self._by_ref.pop(tuple(ref), None)
        if request_id is None:
            return msg
        trade = self._by_request.pop(request_id)
        if not isinstance(msg, TradeDone):
            return msg
        return dataclasses.replace(msg, trace={**trade.stamps, "ld_reply_out": now})

    @property
    def active(self) -> bool:
        """Whether any hook may have something to do."""
        return bool(self._by_request) or self._follower_recv is not None
