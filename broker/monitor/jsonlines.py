"""``--json``: one JSON object per line, flushed at once, for scripts and tests.

Three types of line, each with ``time`` (Unix seconds when the monitor
received or concluded it)::

    {"type": "bus", "topic": "hb", "time": 1764064800.123,
     "message": {"msg": "heartbeat", "node": "order-1", "incarnation": "...", ...}}
    {"type": "derived", "kind": "node_dead", "node": "order-3", "time": ...,
     "reason": "silent", "silent_s": 0.342, "incarnation": "..."}
    {"type": "socket", "node": "monitor", "socket": "sub", "event": "disconnected",
     "endpoint": "tcp://127.0.0.1:5556", "time": ...}

``bus`` lines carry every message of the bus, its fields under ``message``;
``derived`` lines are the monitor's own conclusions
(:class:`broker.monitor.state.Kind`); ``socket`` lines are the monitor's own
SUB socket's events from the ZeroMQ socket monitor.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TextIO

from common.protocol import Message, Topic

from .listener import OutputClosed
from .state import MONITOR, Derived, MonitorState

DERIVED = "derived"
SOCKET = "socket"
# What --topic accepts: the bus topics (by wire name or long name), plus the
# monitor's own lines.
TOPIC_NAMES = {
    "hb": "hb", "heartbeat": "hb", "leader": "leader", "stock": "stock", "event": "event",
    DERIVED: DERIVED, SOCKET: SOCKET,
}


class JsonLines:
    """Writes lines to ``out``.

    :param topics: the ``--topic`` names to print (see :data:`TOPIC_NAMES`);
        empty means everything.
    """

    def __init__(self, out: TextIO, topics: list[str] | tuple[str, ...] = ()) -> None:
        self.out = out
        self.topics = {TOPIC_NAMES[t] for t in topics}

    def wants(self, name: str) -> bool:
        return not self.topics or name in self.topics

    def bus(self, topic: Topic, msg: Message, wall: float) -> None:
        name = topic.value.decode()
        if self.wants(name):
            self.write({"type": "bus", "topic": name, "time": wall, "message": message_fields(msg)})

    def socket(self, label: str, event: str, endpoint: str, wall: float) -> None:
        if self.wants(SOCKET):
            self.write({"type": SOCKET, "node": MONITOR, "socket": label, "event": event,
                        "endpoint": endpoint, "time": wall})

    def derived(self, events: list[Derived], wall: float) -> None:
        if self.wants(DERIVED):
            for event in events:
                self.write({"type": DERIVED, **event.to_dict(), "time": wall})

    def refresh(self, state: MonitorState, now: float, wall: float) -> None:
        pass

    def wait_s(self, now: float) -> float:
        return float("inf")

    def write(self, doc: dict[str, Any]) -> None:
        """Print one line and flush it (a reader on a pipe sees it at once).

        :raises OutputClosed: when the reader has gone (``| head``).
        """
        try:
            self.out.write(json.dumps(doc, default=str, separators=(",", ":")) + "\n")
            self.out.flush()
        except BrokenPipeError:
            raise OutputClosed from None


def message_fields(msg: Message) -> dict[str, Any]:
    """A bus message as a JSON-ready map: ``msg`` (its name) and its fields."""
    return {"msg": msg.MSG, **dataclasses.asdict(msg)}
