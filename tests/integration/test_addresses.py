"""A whole cluster spread over loopback addresses, as over several hosts.

README.md's "Running on several hosts" says every node reads one
config.toml in which each endpoint is where the others reach it and ``bind``
is where the node listens. This runs it that way: every node on a loopback
address of its own (the broker on 127.0.0.2, the catalog on 127.0.0.3, the
replicas on 127.0.0.4 to 127.0.0.6, the frontend on 127.0.0.7), all from one
config file, every port found free on its own address. The broker and the
catalog bind every address (``tcp://0.0.0.0:<port>``) as README.md's example
does, so their ``bind`` differs from their endpoint; the replicas and the
frontend bind their own address only. Trades go through it, the leader is
killed with SIGKILL, and the history checker judges every promise.
"""

from __future__ import annotations

import errno
import socket

import pytest

from common import config as configuration
from common.protocol import LeaderAnnouncement
from harness.bus import BusTap
from harness.checker import assert_promises_kept
from harness.cluster import loopback_problem, spread_addresses, wait_until
from harness.history import History, Load

pytestmark = pytest.mark.slow

ADDRESSES = spread_addresses(replicas=3, frontends=1)
BIND_ANY = ("broker", "catalog")
# An address no node uses: binding a node's port there succeeds unless the
# node listens on every address.
UNUSED = "127.0.0.200"
PROBLEM = loopback_problem([*ADDRESSES.values(), UNUSED])


def listens_everywhere(port: int) -> bool:
    """True if something holds ``port`` on every address (0.0.0.0)."""
    with socket.socket() as s:
        try:
            s.bind((UNUSED, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def acked_after(history: History, count: int, timeout: float = 20) -> None:
    target = len(history.by_status("ok")) + count
    wait_until(lambda: len(history.by_status("ok")) >= target, timeout, f"{count} more acknowledged trades")


@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_a_cluster_over_several_addresses_keeps_its_promises_through_a_leader_kill(cluster_factory):
    cluster = cluster_factory(addresses=ADDRESSES, bind_any=BIND_ANY)

    # One config file, as every host would have it.
    config = configuration.load(cluster.config_path)
    assert config.broker.xsub.connect == f"tcp://{ADDRESSES['broker']}:{cluster.ports['xsub']}"
    assert config.broker.xpub.bind == f"tcp://0.0.0.0:{cluster.ports['xpub']}"
    assert config.catalog.endpoint.connect == f"tcp://{ADDRESSES['catalog']}:{cluster.ports['catalog']}"
    assert config.catalog.endpoint.bind == f"tcp://0.0.0.0:{cluster.ports['catalog']}"
    for replica in config.orders:
        assert replica.endpoint.bind == replica.endpoint.connect == f"tcp://{ADDRESSES[replica.name]}:" \
                                                                     f"{cluster.ports[replica.name]}"
    assert (config.frontend.host, config.frontend.port) == (ADDRESSES["frontend"], cluster.http_ports[0])
    for name, node in (("xsub", "broker"), ("xpub", "broker"), ("catalog", "catalog"),
                       *((f"order-{i}", f"order-{i}") for i in (1, 2, 3))):
        assert listens_everywhere(cluster.ports[name]) == (node in BIND_ANY), name
    assert not listens_everywhere(cluster.http_ports[0])
    stats = cluster.stats()
    assert set(stats["heard"]) >= {"broker", "catalog", "order-1", "order-2", "order-3"}

    tap = BusTap(cluster)  # on the broker's own address
    history = History()
    load = Load(history, cluster.http_addresses, clients=4, max_ops=500, max_seconds=40)
    try:
        load.start()
        acked_after(history, 30)
        leader, epoch = tap.wait_leader()
        history.note(f"SIGKILL order-{leader}")
        cluster.replica(leader).kill()
        new, new_epoch = tap.wait_leader(other_than=leader, min_epoch=epoch + 1)
        assert new != leader and new_epoch > epoch
        acked_after(history, 30)
        load.stop()
        # The new leader announces the endpoint of its own address, from the one config.
        announced = [h.msg for h in tap.since(0) if isinstance(h.msg, LeaderAnnouncement) and h.msg.leader == new]
        assert announced and {a.endpoint for a in announced} == {cluster.endpoint(f"order-{new}")}
        history.note(f"restart order-{leader}")
        cluster.replica(leader).start()
        assert_promises_kept(cluster, history)
    finally:
        load.stop()
        tap.close()
