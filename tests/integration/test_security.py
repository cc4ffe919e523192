"""Promise 10, only the cluster speaks to the cluster: CurveZMQ on every
socket between nodes, against real clusters.

An outsider comes in two kinds: a socket with no key at all, and one with a
valid CURVE key pair of its own that is not the cluster's (it knows every
server's public key: those are public). Neither can look up, trade, read the
log, replicate, vote, publish a stock change, announce a leader or even listen to
the bus on any node: its handshake fails, the node logs the attempt (with
the peer's address and key when it had one) and counts it in its heartbeat,
and the cluster's state is the same afterwards. A process on a node's port
without the node's key gets no message from the cluster either, and CURVE
switched off for debugging is said loudly by every node.
"""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from common import codec, security
from common.protocol import (
    AppendEntries, AuthRefusedEvent, AuthStatus, GetOrder, Heartbeat, LeaderAnnouncement, LogEntry, Lookup,
    PlaceTrade, ReadCommitted, StockChanged, StockChanges, StockInfo, Topic, TradeRecord, VoteRequest,
)
from common.sockets import CurveClient, apply_curve
from harness.bus import BusTap
from harness.cluster import ROOT, Cluster, wait_until

from .test_monitor import Monitor

pytestmark = pytest.mark.slow

NO_KEY, OWN_KEY = "no key", "a key not the cluster's"
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
FAR = 1_000_000  # an epoch, a term, a sequence number far beyond the cluster's


class Outsider:
    """One socket of a process outside the cluster, to ``target`` (a node,
    ``xsub`` or ``xpub``), with the socket monitor watching its handshakes."""

    def __init__(self, ctx: zmq.Context, cluster: Cluster, who: str, kind: int, target: str) -> None:
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.key: str | None = None
        if who == OWN_KEY:
            public, secret = zmq.curve_keypair()
            self.key = public.decode()
            server = cluster.keys().known["broker" if target in ("xsub", "xpub") else target]
            apply_curve(self.sock, CurveClient(public, secret, server))
        if kind == zmq.SUB:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.monitor = self.sock.get_monitor_socket(HANDSHAKE_EVENTS)
        self.events: list[int] = []
        self.sock.connect(cluster.endpoint(target))

    def handshakes(self) -> list[int]:
        while self.monitor.poll(0):
            self.events.append(recv_monitor_message(self.monitor)["event"])
        return self.events

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


@pytest.fixture(scope="module")
def watched(shared_cluster):
    tap = BusTap(shared_cluster)
    ctx = zmq.Context()
    try:
        wait_until(lambda: all(tap.last_heartbeat(n) for n in ("broker", "catalog", "order-1", "order-2", "order-3")),
                   10, "every node's heartbeat")
        yield shared_cluster, tap, ctx
    finally:
        tap.close()
        ctx.destroy(linger=0)


def gate(tap: BusTap, node: str) -> AuthStatus:
    hb = tap.last_heartbeat(node)
    status = hb.broker or hb.catalog or hb.replica
    return status.auth


def fresh_heartbeats(tap: BusTap, since: float) -> dict[str, Heartbeat]:
    """A heartbeat of every node sent after ``since``."""
    def heard() -> dict[str, Heartbeat] | None:
        beats = {h.msg.node: h.msg for h in tap.since(since) if isinstance(h.msg, Heartbeat)}
        return beats if {"broker", "catalog", "order-1", "order-2", "order-3", "frontend"} <= set(beats) else None

    return wait_until(heard, 10, "a fresh heartbeat of every node")


def cluster_state(cluster: Cluster, tap: BusTap) -> dict:
    """Everything an outsider's message could change, read anew."""
    beats = fresh_heartbeats(tap, time.monotonic())
    stats = cluster.stats()
    return {
        "stocks": cluster.stocks(),
        "logs": {i: cluster.order_log(i) for i in (1, 2, 3)},
        "catalog applied": beats["catalog"].catalog.applied,
        "terms": {i: beats[f"order-{i}"].replica.term for i in (1, 2, 3)},
        "leaders": {i: beats[f"order-{i}"].replica.leader for i in (1, 2, 3)},
        "frontend leader": stats["leader"],
        "cache flushes": stats["cache"]["flushes"],
        "FishCo as served": cluster.api.get("/stocks/FishCo").data,
    }


def attempts(cluster: Cluster) -> dict[str, tuple[str, int, list[list[bytes]]]]:
    """What an outsider tries: name -> (target, socket type, the frames it sends)."""
    leader = cluster.leader()
    follower = 1 if leader != 1 else 2
    last = len(cluster.trades(follower))
    record = TradeRecord(request_id="intruder-r", name="TorcJewels", quantity=90, side="buy", txn=last + 1)
    dealer = lambda msg: [b"", codec.encode(msg)]  # noqa: E731
    return {
        "look up": ("catalog", zmq.DEALER, [dealer(Lookup("TorcJewels"))]),
        "look up at a replica": (f"order-{follower}", zmq.DEALER, [dealer(Lookup("TorcJewels"))]),
        "read the log": (f"order-{follower}", zmq.DEALER, [dealer(ReadCommitted(after=0, limit=10))]),
        "trade": (f"order-{leader}", zmq.DEALER, [dealer(PlaceTrade("intruder-2", "TorcJewels", 90, "buy"))]),
        "read an order": (f"order-{leader}", zmq.DEALER, [dealer(GetOrder(1))]),
        "replicate": (f"order-{follower}", zmq.DEALER, [dealer(AppendEntries(
            term=FAR, leader=leader, prev_index=0, prev_term=0, entries=[LogEntry(1, FAR, record)], commit=1))]),
        "vote": (f"order-{follower}", zmq.DEALER, [dealer(VoteRequest(
            term=FAR, candidate=follower, last_index=FAR, last_term=FAR, pre_vote=False))]),
        "publish a stock change": ("xsub", zmq.PUB, [codec.encode_pub(Topic.STOCK, StockChanges(
            prev=FAR - 1, index=FAR, changes=[StockChanged(name="FishCo", price=0.01, quantity=0, version=FAR)]))]),
        "announce a leader": ("xsub", zmq.PUB, [codec.encode_pub(Topic.LEADER, LeaderAnnouncement(
            leader=follower, epoch=FAR, endpoint=cluster.endpoint(f"order-{follower}")))]),
        "hear the bus": ("xpub", zmq.SUB, []),
    }


ATTEMPTS = ["look up", "look up at a replica", "read the log", "trade", "read an order", "replicate", "vote",
            "publish a stock change", "announce a leader", "hear the bus"]


@pytest.mark.parametrize("who", [NO_KEY, OWN_KEY])
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_an_outsider_cannot_reach_any_node_and_changes_nothing(watched, attempt, who):
    cluster, tap, ctx = watched
    target, kind, messages = attempts(cluster)[attempt]
    node = "broker" if target in ("xsub", "xpub") else target
    label = target if node == "broker" else "router"
    log_mark = f"socket={label} event=handshake_failed"
    before_state = cluster_state(cluster, tap)
    before_gate = gate(tap, node)
    before_log = cluster.node(node).log().count(log_mark)
    started = time.monotonic()
    outsider = Outsider(ctx, cluster, who, kind, target)
    for frames in messages:  # queued until the handshake succeeds: never
        outsider.sock.send_multipart(frames, zmq.NOBLOCK)
    try:
        def refused() -> bool:
            if kind == zmq.PUB:  # a PUB drops what it cannot send: keep trying until the refusal shows
                for frames in messages:
                    outsider.sock.send_multipart(frames, zmq.NOBLOCK)
            if who == NO_KEY:
                return (gate(tap, node).failed_handshakes > before_gate.failed_handshakes
                        and cluster.node(node).log().count(log_mark) > before_log)
            return (any(e.key == outsider.key and e.socket == label
                        for e in tap.events(AuthRefusedEvent, node, since=started))
                    and outsider.key in cluster.node(node).log()
                    and gate(tap, node).refused > before_gate.refused)

        wait_until(refused, 10, f"{node} to refuse the outsider ({who}) and say so")
        wait_until(lambda: outsider.handshakes(), 5, "the outsider's handshake to fail")
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in outsider.handshakes()
        # Nothing came back: no reply, and no bus message (heartbeats flow every 100 ms).
        fresh_heartbeats(tap, time.monotonic())
        assert not outsider.sock.poll(0)
    finally:
        outsider.close()
    assert cluster_state(cluster, tap) == before_state
    if who == OWN_KEY:
        event = next(e for e in tap.events(AuthRefusedEvent, node, since=started) if e.key == outsider.key)
        assert event.address == "127.0.0.1" and "public keys" in event.reason


def test_the_clusters_tools_key_gets_in_and_is_answered(watched):
    cluster, tap, ctx = watched
    cluster.wait_lookups()
    sock = cluster.secure(ctx.socket(zmq.REQ), "catalog")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint("catalog"))
    try:
        sock.send(codec.encode(Lookup("FishCo")))
        assert sock.poll(5000)
        reply = codec.decode(sock.recv())
        assert isinstance(reply, StockInfo) and reply.name == "FishCo"
    finally:
        sock.close(linger=0)
    assert cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "sell"}).status == 200


def test_the_monitor_shows_each_refusal_with_its_key(watched):
    cluster, tap, ctx = watched
    monitor = Monitor(cluster.config_path)
    try:
        monitor.wait_for(lambda line: line["type"] == "bus" and line["message"]["msg"] == "heartbeat", 15,
                         "the monitor to hear the bus")
        outsider = Outsider(ctx, cluster, OWN_KEY, zmq.DEALER, "catalog")
        try:
            outsider.sock.send_multipart([b"", codec.encode(Lookup("FishCo"))], zmq.NOBLOCK)
            line = monitor.wait_for(lambda line: line["type"] == "bus" and line["message"]["msg"] == "auth_refused"
                                    and line["message"]["key"] == outsider.key, 15, "the refusal on the monitor")
        finally:
            outsider.close()
        assert line["message"]["node"] == "catalog" and line["message"]["socket"] == "router"
        beat = monitor.wait_for(lambda line: line["type"] == "bus" and line["message"]["msg"] == "heartbeat"
                                and line["message"]["node"] == "catalog"
                                and line["message"]["catalog"]["auth"]["refused"] >= 1, 15, "the count")
        assert beat["message"]["catalog"]["auth"]["curve"] is True
    finally:
        monitor.kill()
    shown = subprocess.run([sys.executable, "-m", "broker.monitor", "--config", str(cluster.config_path),
                            "--once", "1", "--width", "220"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "refused" in shown.stdout and "curve" in shown.stdout and "CURVE OFF" not in shown.stdout


def test_a_process_on_a_nodes_port_without_its_key_gets_no_message(cluster_factory):
    """A replica dies and an impostor takes its port, with a key pair of its
    own, letting any client key in: the catalog, the other replicas and the
    frontend, who dial the replica's public key, never finish a handshake with it."""
    cluster = cluster_factory()
    cluster.replica(1).kill()
    ctx = zmq.Context()
    impostor = ctx.socket(zmq.ROUTER)
    impostor.setsockopt(zmq.LINGER, 0)
    public, secret = zmq.curve_keypair()
    impostor.setsockopt(zmq.CURVE_SERVER, 1)
    impostor.setsockopt(zmq.CURVE_PUBLICKEY, public)
    impostor.setsockopt(zmq.CURVE_SECRETKEY, secret)  # no ZAP handler here: any client key would do
    events = impostor.get_monitor_socket(HANDSHAKE_EVENTS)
    failed, succeeded = [], []
    try:
        wait_until(lambda: _bind(impostor, cluster.endpoint("order-1")), 10, "the replica's port to be free")

        def enough_tries() -> bool:
            while events.poll(0):
                event = recv_monitor_message(events)["event"]
                (succeeded if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else failed).append(event)
            return len(failed) >= 6  # the catalog, the frontend and two replicas redial every 100 ms

        wait_until(enough_tries, 15, "the cluster's clients to try the impostor")
        assert succeeded == [] and not impostor.poll(0)
        wait_until(lambda: "socket=peer-1 event=handshake_failed" in cluster.node("order-2").log(), 10,
                   "a replica to log its failed handshake with the impostor")
        wait_until(lambda: "socket=order-1 event=handshake_failed" in cluster.node("catalog").log(), 10,
                   "the catalog to log its failed handshake with the impostor")
        wait_until(lambda: "socket=dealer:order-1 event=handshake_failed" in cluster.frontend.log(), 10,
                   "the frontend to log its failed handshake with the impostor")
    finally:
        impostor.disable_monitor()
        events.close(linger=0)
        impostor.close(linger=0)
        ctx.term()
    cluster.replica(1).start()
    cluster.wait_ready()
    assert cluster.api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}).status == 200


def _bind(sock: zmq.Socket, endpoint: str) -> bool:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        return False
    return True


def test_with_curve_off_every_node_says_so_and_plain_sockets_work(cluster_factory):
    cluster = cluster_factory(settings={"security": {"curve": False}})
    for name, node in cluster.nodes.items():
        assert "CURVE IS OFF" in node.log(), name
    assert cluster.stats()["curve"] is False
    tap = BusTap(cluster)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)  # no key at all
    sock.setsockopt(zmq.LINGER, 0)
    try:
        beat = wait_until(lambda: tap.last_heartbeat("catalog"), 10, "the catalog's heartbeat")
        assert beat.catalog.auth == AuthStatus(curve=False, refused=0, failed_handshakes=0)
        cluster.wait_lookups()
        sock.connect(cluster.endpoint("catalog"))
        sock.send(codec.encode(Lookup("FishCo")))
        assert sock.poll(5000) and codec.decode(sock.recv()).name == "FishCo"
    finally:
        sock.close(linger=0)
        ctx.term()
        tap.close()


@pytest.mark.parametrize("argv", [
    ["-m", "broker"], ["-m", "catalog"], ["-m", "order", "--id", "2"], ["-m", "frontend"],
    ["-m", "broker.monitor", "--once", "1"],
], ids=["broker", "catalog", "order", "frontend", "monitor"])
def test_a_process_without_its_keys_stops_at_once_and_says_how_to_make_them(cluster_factory, argv):
    cluster = cluster_factory(start=False)
    for secret in (cluster.keys_dir / security.SECRET_DIR).iterdir():
        secret.unlink()
    done = subprocess.run([sys.executable, *argv, "--config", str(cluster.config_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr and "./run.sh keys" in done.stderr


def test_run_sh_keys_makes_what_is_missing_and_a_start_only_makes_keys_where_there_are_none(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text())
    env = {"PATH": "/usr/bin:/bin", "BAZAAR_CONFIG": str(config)}

    def keys(*args: str) -> str:
        done = subprocess.run([str(ROOT / "run.sh"), "keys", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "made CURVE key pairs for broker, catalog, order-1, order-2, order-3, frontend, monitor, tools" in keys()
    keys_dir = tmp_path / "keys"
    assert (keys_dir / security.SECRET_DIR / "catalog.key_secret").stat().st_mode & 0o777 == 0o600
    assert "no key pair missing" in keys()
    # A host that runs order-2 only: it holds every public key and its own pair.
    for name in ("broker", "catalog", "order-1", "order-3", "frontend", "monitor", "tools"):
        (keys_dir / security.SECRET_DIR / f"{name}.key_secret").unlink()
    before = {p.name: p.read_bytes() for p in (keys_dir / security.PUBLIC_DIR).iterdir()}
    ensure = subprocess.run([sys.executable, "-m", "common.cluster", "keys", "--if-none", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ensure.returncode == 0 and ensure.stdout == ""
    assert "public key only" in keys()  # nothing made: those pairs live on other hosts
    assert {p.name: p.read_bytes() for p in (keys_dir / security.PUBLIC_DIR).iterdir()} == before
    assert sorted(p.name for p in (keys_dir / security.SECRET_DIR).iterdir()) == ["order-2.key_secret"]


# --- the ZAP handler, in one process ---------------------------------------------


def test_the_zap_handler_refuses_what_is_not_curve():
    ctx = zmq.Context()
    refusals = []
    zap = security.ZapHandler(ctx, {}, refusals.append)
    asker = ctx.socket(zmq.REQ)
    asker.setsockopt(zmq.LINGER, 0)
    try:
        asker.connect("inproc://zeromq.zap.01")
        asker.send_multipart([b"1.0", b"7", b"router", b"10.0.0.1", b"", b"NULL"])
        assert zap.sock.poll(2000)
        zap.handle()
        assert asker.poll(2000)
        assert asker.recv_multipart()[:3] == [b"1.0", b"7", b"400"]
        assert zap.refused == 1 and refusals[0].address == "10.0.0.1" and "NULL" in refusals[0].reason
    finally:
        asker.close(linger=0)
        zap.close()
        ctx.term()


def test_a_stranger_is_reported_once_a_second_and_counted_every_time():
    ctx = zmq.Context()
    refusals = []
    now = [100.0]
    known, _ = zmq.curve_keypair()
    stranger, _ = zmq.curve_keypair()
    zap = security.ZapHandler(ctx, {known: "catalog"}, refusals.append, clock=lambda: now[0])
    zap.serve_domain("router")
    asker = ctx.socket(zmq.REQ)
    asker.setsockopt(zmq.LINGER, 0)

    def ask(key: bytes) -> bytes:
        asker.send_multipart([b"1.0", b"1", b"router", b"10.0.0.2", b"", b"CURVE", z85.decode(key)])
        assert zap.sock.poll(2000)
        zap.handle()
        assert asker.poll(2000)
        return asker.recv_multipart()[2]

    try:
        asker.connect("inproc://zeromq.zap.01")
        assert ask(known) == b"200"
        assert [ask(stranger) for _ in range(5)] == [b"400"] * 5
        now[0] += 1.5
        assert ask(stranger) == b"400"
        assert zap.refused == 6
        assert [(r.key, r.address, r.domain, r.repeated) for r in refusals] == [
            (stranger.decode(), "10.0.0.2", "router", 0), (stranger.decode(), "10.0.0.2", "router", 4)]
    finally:
        asker.close(linger=0)
        zap.close()
        ctx.term()


def test_garbage_frames_are_still_answered_past_the_handshake(watched):
    """The tools key gets through the handshake; what it sends then is the
    message layer's business (tests/integration/test_recovery.py has the rest)."""
    cluster, tap, ctx = watched
    sock = cluster.secure(ctx.socket(zmq.DEALER), "catalog")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.endpoint("catalog"))
    try:
        sock.send_multipart([b"", b"\xc1"])
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv_multipart()[-1])["code"] == "bad_request"
    finally:
        sock.close(linger=0)
