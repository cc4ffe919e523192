"""The scrolling list of events the live view shows, pure.

Most items are one happening each (a node died, a leader was elected). ZeroMQ
socket events come in bursts (a killed node makes every peer report
``disconnected`` and then ``connect_retried`` ten times a second), so they are
grouped: the socket events of one node that follow each other within
``group_s`` of the group's latest update become one item that counts them by
event name.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

FEED_LENGTH = 200
SOCKET_GROUP_S = 2.0
SOCKETS = "sockets"


@dataclass
class FeedItem:
    """One line of the feed.

    :ivar at: when it happened (the first event, for a group).
    :ivar last_at: the latest event of a group (``at`` otherwise).
    :ivar counts: for a socket group, how often each event name occurred.
    :ivar labels: for a socket group, the sockets involved (``sub``, ``peer-3``...).
    :ivar endpoints: for a socket group, the endpoints involved.
    """

    at: float
    kind: str
    node: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    last_at: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    labels: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.last_at = max(self.last_at, self.at)


class Feed:
    """The newest ``length`` items, oldest first.

    :param group_s: socket events of one node closer than this are grouped.
    """

    def __init__(self, length: int = FEED_LENGTH, group_s: float = SOCKET_GROUP_S) -> None:
        self.items: deque[FeedItem] = deque(maxlen=length)
        self.group_s = group_s
        self._open: dict[str, FeedItem] = {}

    def add(self, at: float, kind: str, node: str | None, detail: dict[str, Any] | None = None) -> FeedItem:
        """Append one item."""
        item = FeedItem(at, kind, node, dict(detail or {}))
        self.items.append(item)
        return item

    def socket(self, at: float, node: str, label: str, event: str, endpoint: str) -> FeedItem:
        """Count one socket event of ``node``, in its open group or a new one."""
        group = self._open.get(node)
        if group is None or at - group.last_at > self.group_s or not self._holds(group):
            group = self.add(at, SOCKETS, node)
            self._open[node] = group
        group.last_at = max(group.last_at, at)
        group.counts[event] += 1
        if label:
            group.labels.add(label)
        if endpoint:
            group.endpoints.add(endpoint)
        return group

    def recent(self, count: int) -> list[FeedItem]:
        """The newest ``count`` items, oldest first."""
        if count <= 0:
            return []
        return list(self.items)[-count:]

    def _holds(self, item: FeedItem) -> bool:
        # A group pushed out of the feed is not reopened (it would be invisible).
        return any(i is item for i in reversed(self.items))
