"""A frontend SIGKILLed with trades in flight: the trades it held are not
lost and not done twice. A client that got no answer resends with the same
``Idempotency-Key`` to another frontend (or the same one, restarted) and
gets the one outcome the log holds. Every replica is hung (SIGSTOP) while
the trades are in flight, so none is answered before the kill. (A polite stop, SIGTERM, answers every
request in flight first: tests/integration/test_http_server.py.)"""

from __future__ import annotations

import threading

import pytest

from harness.cluster import Http, wait_until

pytestmark = pytest.mark.slow

IN_FLIGHT = 6


def test_a_frontend_killed_with_trades_in_flight_loses_none_and_doubles_none(cluster_factory):
    cluster = cluster_factory(frontends=2)
    first, second = (cluster.http(port) for port in cluster.http_ports)
    before = first.get("/stocks/BoarCo").data["quantity"]
    done = first.post("/orders", {"name": "BoarCo", "quantity": 1, "type": "buy"}, headers={"Idempotency-Key": "k-0"})
    assert done.status == 200
    sent_before = cluster.stats()["backend"]["order_calls"]
    for i in (1, 2, 3):  # every replica hung (no election either): the trades below stay in flight
        cluster.replica(i).pause()
    replies: dict[int, object] = {}

    def trade(k: int) -> None:
        client = Http(cluster.http_ports[0], timeout=30)
        try:
            replies[k] = client.post("/orders", {"name": "BoarCo", "quantity": 1, "type": "buy"},
                                     headers={"Idempotency-Key": f"k-{k}"})
        except OSError as exc:
            replies[k] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=trade, args=(k,)) for k in range(1, IN_FLIGHT + 1)]
    for t in threads:
        t.start()
    wait_until(lambda: cluster.stats()["backend"]["order_calls"] >= sent_before + IN_FLIGHT, 10,
               "the trades to reach the backend")
    cluster.frontend.kill()  # SIGKILL, its group too
    for t in threads:
        t.join(timeout=30)
    assert all(isinstance(r, OSError) for r in replies.values()), replies  # no answer: outcome unknown
    for i in (1, 2, 3):
        cluster.replica(i).resume()

    # Each client resends its trade, with its key, to the other frontend: one outcome each.
    def settle(k: int):
        reply = second.post("/orders", {"name": "BoarCo", "quantity": 1, "type": "buy"},
                            headers={"Idempotency-Key": f"k-{k}"})
        return reply if reply.status == 200 else None

    settled = {k: wait_until(lambda k=k: settle(k), 20, f"trade k-{k} to settle") for k in range(IN_FLIGHT + 1)}
    numbers = {reply.data["transaction_number"] for reply in settled.values()}
    assert len(numbers) == IN_FLIGHT + 1, settled  # one transaction per key
    assert settled[0].data == done.data  # the trade acknowledged before the kill is unchanged
    for n in numbers:
        assert second.get(f"/orders/{n}").data["name"] == "BoarCo"
    # Each key was bought once, whichever frontend carried it and however often it was sent.
    quantity = wait_until(lambda: (lambda q: q if q == before - IN_FLIGHT - 1 else None)(
        second.get("/stocks/BoarCo").data["quantity"]), 10, "the stock to show every trade once")
    assert quantity == before - IN_FLIGHT - 1
    assert cluster.stocks()["BoarCo"][1] == before - IN_FLIGHT - 1

    # The killed frontend comes back and answers the same.
    cluster.frontend.start()
    cluster.wait_ready()
    again = first.post("/orders", {"name": "BoarCo", "quantity": 1, "type": "buy"}, headers={"Idempotency-Key": "k-3"})
    assert again.status == 200 and again.data == settled[3].data
