"""The live terminal view, drawn with rich.

:func:`render` turns a :class:`broker.monitor.state.Snapshot` into a rich
renderable (a header, the table of nodes and the event feed) and reads no
clock of its own; :class:`LiveView` redraws it in place a few times a second
from the listener's loop (``auto_refresh`` is off, so no rich thread ever
reads the state while the loop changes it). :class:`Quiet` collects without
drawing, for ``--once``.
"""

from __future__ import annotations

import time

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from common.heartbeat import Ticker
from common.protocol import Message, NodeKind, ReplicaRole, Topic

from .feed import SOCKETS, FeedItem
from .state import Derived, MonitorState, NodeRow, Snapshot

REFRESH_S = 0.25
STATE_STYLES = {"alive": "green", "dead": "bold red", "silent": "yellow", "unknown": "dim"}
ROLE_STYLES = {"leader": "bold yellow", "recovering": "cyan", "candidate": "magenta", "pre_candidate": "magenta"}
KIND_STYLES = {
    "node_dead": "bold red", "leader_lost": "bold red", "bus_disconnected": "bold red",
    "node_back": "green", "bus_connected": "green", "caught_up": "green", "node_seen": "dim green",
    "leader_changed": "bold yellow", "cache_flushed": "cyan", "stock_gap": "magenta",
    SOCKETS: "blue", "stopping": "yellow", "started": "dim", "auth_refused": "bold red",
    "storage": "bold red",
}
SOCKET_SHORT = {
    "connected": "conn", "connect_retried": "retry", "disconnected": "disc", "accepted": "accept",
    "handshake_succeeded": "hs", "handshake_failed": "hs-fail", "handshake_failed_protocol": "hs-fail",
    "handshake_failed_auth": "hs-fail", "bind_failed": "bind-fail", "accept_failed": "accept-fail",
}


def render(snap: Snapshot, wall_now: float, title: str = "Bazaar monitor") -> Group:
    """The whole screen for one moment.

    :param wall_now: Unix time at ``snap.now``, to print event times.
    """
    return Group(_header(snap, title), _nodes(snap), _feed(snap, wall_now))


class _Drawing:
    """A sink that ignores single messages: it draws the state as a whole."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title

    def bus(self, topic: Topic, msg: Message, wall: float) -> None:
        pass

    def socket(self, label: str, event: str, endpoint: str, wall: float) -> None:
        pass

    def derived(self, events: list[Derived], wall: float) -> None:
        pass

    def feed_lines(self, state: MonitorState) -> int:
        """As many event lines as fit under the table on the terminal."""
        return max(5, self.console.size.height - len(state.nodes) - 12)


class LiveView(_Drawing):
    """Redraws :func:`render` in place every ``refresh_s`` (use as a context manager)."""

    def __init__(self, console: Console, title: str, refresh_s: float = REFRESH_S) -> None:
        super().__init__(console, title)
        self.refresh_s = refresh_s
        self.ticker: Ticker | None = None
        self.live = Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def refresh(self, state: MonitorState, now: float, wall: float) -> None:
        if self.ticker is None:
            self.ticker = Ticker(self.refresh_s, now)
        if self.ticker.due(now):
            self.live.update(render(state.snapshot(now, self.feed_lines(state)), wall, self.title), refresh=True)

    def wait_s(self, now: float) -> float:
        return 0.0 if self.ticker is None else self.ticker.remaining(now)


class Quiet(_Drawing):
    """Listens without drawing; :meth:`print` draws once at the end (``--once``)."""

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def refresh(self, state: MonitorState, now: float, wall: float) -> None:
        pass

    def wait_s(self, now: float) -> float:
        return float("inf")

    def print(self, state: MonitorState, now: float, wall: float) -> None:
        self.console.print(render(state.snapshot(now, self.feed_lines(state)), wall, self.title))


# --- pieces ---------------------------------------------------------------------


def _rate(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _header(snap: Snapshot, title: str) -> Text:
    text = Text()
    text.append(f"{title}   ", style="bold")
    bus_style = {"up": "green", "down": "bold red", "silent": "yellow"}.get(snap.bus, "dim")
    text.append(f"bus {snap.bus}", style=bus_style)
    if snap.bus_down_s is not None:
        text.append(f" for {_seconds(snap.bus_down_s)}", style=bus_style)
    if snap.last_gap_s is not None:
        text.append(f" · last gap {_seconds(snap.last_gap_s)}")
    text.append(f" · {_rate(snap.rates['bus'], 0)} msg/s")
    if snap.malformed:
        text.append(f" · {snap.malformed} malformed", style="magenta")
    if snap.curve_off:
        text.append(f" · CURVE OFF on {', '.join(snap.curve_off)}", style="bold red")
    if snap.refused or snap.failed_handshakes:
        text.append(f" · refused {snap.refused} keys, {snap.failed_handshakes} failed handshakes", style="red")
    text.append("\n")
    leader_row = next((r for r in snap.nodes if r.name == snap.leader_node), None)
    if snap.leader_node is None:
        text.append("leader none yet", style="yellow")
    else:
        state = "unknown" if leader_row is None else leader_row.state
        text.append(f"leader {snap.leader_node}", style="bold yellow")
        text.append(f" · epoch {snap.epoch} · ")
        text.append(state, style=STATE_STYLES.get(state, ""))
    hit = "-" if snap.hit_rate is None else f"{snap.hit_rate:.0%}"
    text.append(
        f"    trades/s {_rate(snap.rates['trades'])}"
        f"    lookups/s {_rate(snap.rates['lookups'])} (hit rate {hit})"
        f"    invalidations/s {_rate(snap.rates['invalidations'])}"
    )
    return text


def _nodes(snap: Snapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, header_style="bold")
    # Every column but the last keeps its natural width; socket events give way on a narrow terminal.
    for name, justify in (("Node", "left"), ("State", "left"), ("Beat", "right"), ("Role", "left"),
                          ("Epoch", "right"), ("Last txn", "right"), ("Lag", "right"), ("Load", "left"),
                          ("Auth", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("Socket events", no_wrap=True, overflow="ellipsis", ratio=1)
    rows = [_cells(row) for row in snap.nodes]
    for i, column in enumerate(table.columns[:-1]):
        column.min_width = max([len(column.header)] + [Text(str(r[i])).cell_len for r in rows])
    for row in rows:
        table.add_row(*row)
    return table


def _cells(row: NodeRow) -> list[Text | str]:
    state = Text(row.state, style=STATE_STYLES.get(row.state, ""))
    if row.state == "dead" and row.down_s is not None:
        state.append(f" {_seconds(row.down_s)}")
    if row.restarts:
        state.append(f" ↻{row.restarts}", style="cyan")
    disk = _storage(row)
    if disk and row.state != "dead":
        state.append(f" {disk}", style="bold red")
    role, epoch, txn, lag, load = "", "", "", "", ""
    if row.replica is not None:
        r = row.replica
        role = "recovering" if r.recovering and r.role is ReplicaRole.FOLLOWER else r.role.value
        if r.blank:
            role += " blank"
        epoch = str(r.term)
        txn = "none" if r.last_txn == 0 else str(r.last_txn)
        lag = "" if row.lag is None else str(row.lag)
        load = f"{_rate(row.rates.get('trades'))} trades/s"
        if r.lookups:  # lookups it answered while the catalog was down or behind
            load += f" · {_rate(row.rates.get('lookups'))} lookups/s"
    elif row.catalog is not None:
        c = row.catalog
        role = f"applied {c.applied}" + (f" from {row.source}" if row.source is not None else "")
        lag = "" if row.lag is None else str(row.lag)
        load = f"{_rate(row.rates.get('trades'))} trades/s · {_rate(row.rates.get('lookups'))} lookups/s"
    elif row.frontend is not None:
        cache = row.frontend.cache
        role = "cache off" if cache is None else f"cache {cache.size}/{cache.capacity}"
        if cache is not None and not cache.streaming:
            role += " blind"
        load = f"{_rate(row.rates.get('lookups'))} lookups/s"
        if cache is not None:
            load += f" · hit {cache.hit_rate:.0%}"
    elif row.kind is NodeKind.BROKER:
        role = "proxy"
    if row.state == "dead":
        # What a dead node last said is history, not its state: never show a
        # dead "leader" next to the real one.
        return [
            row.name, state, _seconds(row.age_s), Text(f"was {role}" if role else "", style="dim"),
            Text(epoch, style="dim"), Text(txn, style="dim"), "",
            Text(load if row.kind is not NodeKind.REPLICA else "", style="dim"),
            Text(_auth(row).plain, style="dim"), _socket_summary(row.sockets),
        ]
    return [
        row.name, state, _seconds(row.age_s), Text(role, style=ROLE_STYLES.get(role, "")),
        epoch, txn, lag, load, _auth(row), _socket_summary(row.sockets),
    ]


def _storage(row: NodeRow) -> str:
    """``disk full`` (or what else the node's storage says) when it is not ok."""
    status = row.replica or row.catalog
    if status is None or status.storage == "ok":
        return ""
    return f"disk {status.storage}"


def _auth(row: NodeRow) -> Text:
    """CURVE on or OFF, and what the node's gate refused."""
    if row.curve is None:
        return Text("")
    if row.curve is False:
        return Text("CURVE OFF", style="bold red")
    text = Text("curve", style="green")
    if row.auth is not None and (row.auth.refused or row.auth.failed_handshakes):
        text.append(f" refused {row.auth.refused}/{row.auth.failed_handshakes}", style="bold red")
    return text


def _socket_summary(counts: dict[str, int], limit: int = 3) -> str:
    merged: dict[str, int] = {}
    for event, n in counts.items():
        short = SOCKET_SHORT.get(event, event)
        merged[short] = merged.get(short, 0) + n
    top = sorted(merged.items(), key=lambda kv: -kv[1])[:limit]
    return " · ".join(f"{name} {n}" for name, n in top)


def _feed(snap: Snapshot, wall_now: float) -> Table:
    table = Table(title="Events", title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column("time", style="dim", no_wrap=True)
    table.add_column("node", no_wrap=True)
    table.add_column("what")
    for item in snap.feed:
        at = wall_now - (snap.now - item.at)
        stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
        table.add_row(stamp, item.node or "", Text(describe(item), style=KIND_STYLES.get(item.kind, "")))
    if not snap.feed:
        table.add_row("", "", Text("nothing yet", style="dim"))
    return table


def describe(item: FeedItem) -> str:
    """One feed item in words."""
    d = item.detail
    if item.kind == SOCKETS:
        counts = ", ".join(f"{event} ×{n}" for event, n in item.counts.most_common())
        where = ", ".join(sorted(item.labels))
        span = item.last_at - item.at
        return f"sockets: {counts}" + (f" on {where}" if where else "") + (
            f" over {_seconds(span)}" if span >= 0.001 else "")
    texts = {
        "node_seen": lambda: f"seen (incarnation {d.get('incarnation')})",
        "node_dead": lambda: ("DEAD: stopped" if d.get("reason") == "stopping"
                              else f"DEAD: no heartbeat for {_seconds(d.get('silent_s'))}"),
        "node_back": lambda: ("BACK: restarted" if d.get("restarted") else "BACK")
        + (f" after {_seconds(d['down_s'])} down" if d.get("down_s") is not None else ""),
        "leader_changed": lambda: f"leader is order-{d.get('leader')}, epoch {d.get('epoch')}"
        + (f" (was order-{d['previous']})" if d.get("previous") is not None else ""),
        "leader_lost": lambda: f"leader lost (epoch {d.get('epoch')})",
        "caught_up": lambda: f"caught up at index {d.get('index')}",
        "cache_flushed": lambda: f"cache flushed ({d.get('reason') or 'reason not heard'}), flush #{d.get('flushes')}",
        "bus_disconnected": lambda: f"BUS LOST: {d.get('event')} {d.get('endpoint')}",
        "bus_connected": lambda: f"bus connected {d.get('endpoint')}"
        + (f" after {_seconds(d['down_s'])} ({d.get('retries')} retries)" if "down_s" in d else ""),
        "stock_gap": lambda: f"missed the stock changes of {d.get('missed')} log entr"
        + ("y" if d.get("missed") == 1 else "ies") + f" on the bus: entry {d.get('expected')}"
        + (f" to {d['got'] - 1}" if isinstance(d.get("got"), int) and d["got"] - 1 != d.get("expected") else ""),
        "storage": lambda: {"full": "DISK FULL", "failed": "DISK FAILED"}.get(d.get("state"), "disk ok")
        + f": {d.get('detail')}",
        "auth_refused": lambda: f"REFUSED on {d.get('socket')}: key {d.get('key')} from {d.get('address')}"
        + (f" (and {d['repeated']} more like it)" if d.get("repeated") else "") + f": {d.get('reason')}",
    }
    if item.kind in texts:
        return texts[item.kind]()
    fields = " ".join(f"{k}={v}" for k, v in d.items())
    return f"{item.kind} {fields}".strip()
