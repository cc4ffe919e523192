"""The HTTP API end to end, against a whole cluster of real processes.

Every endpoint and every error code of the seed's API, plus what Bazaar
adds (Idempotency-Key, 413, 422, 405, /stats). One cluster serves the whole
module; tests use different stocks where they change quantities so that
they do not depend on each other's order.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from harness.cluster import initial_stocks

pytestmark = pytest.mark.slow

INITIAL = initial_stocks()


@pytest.fixture(scope="module")
def api(shared_cluster):
    return shared_cluster.api


def trade(api, name, quantity, side, **headers):
    return api.post("/orders", {"name": name, "quantity": quantity, "type": side}, headers=headers)


# --- GET /stocks/<name> ---------------------------------------------------------


def test_lookup_answers_the_seed_shape(api):
    reply = api.get("/stocks/FishCo")
    assert reply.status == 200
    assert reply.body == {"data": {"name": "FishCo", "price": 24.5, "quantity": reply.data["quantity"]}}
    assert reply.headers["Content-Type"] == "application/json"


def test_lookup_of_unknown_stock_is_404(api):
    reply = api.get("/stocks/NoSuchCo")
    assert (reply.status, reply.body) == (404, {"error": {"code": 404, "message": "stock not found"}})


def test_lookup_of_overlong_name_is_400(api):
    reply = api.get("/stocks/" + "x" * 65)
    assert reply.status == 400
    assert "at most 64 characters" in reply.error["message"]


# --- POST /orders ---------------------------------------------------------------


def test_trade_answers_the_seed_shape_and_numbers_rise_by_one(api):
    first = trade(api, "MenhirCo", 2, "buy")
    second = trade(api, "MenhirCo", 3, "sell")
    assert first.status == second.status == 200
    assert first.data == {"transaction_number": first.data["transaction_number"], "name": "MenhirCo",
                          "quantity": 2, "type": "buy"}
    assert second.data["transaction_number"] == first.data["transaction_number"] + 1
    assert second.data["type"] == "sell"


def test_a_trade_shows_in_the_next_lookup(api):
    before = api.get("/stocks/BoarCo").data["quantity"]
    assert trade(api, "BoarCo", 7, "buy").status == 200
    assert api.get("/stocks/BoarCo").data["quantity"] == before - 7
    assert trade(api, "BoarCo", 4, "sell").status == 200
    assert api.get("/stocks/BoarCo").data["quantity"] == before - 3


def test_a_buy_larger_than_the_stock_is_refused_and_changes_nothing(api, shared_cluster):
    before = api.get("/stocks/ObeliskCo").data["quantity"]
    marker = trade(api, "ObeliskCo", 1, "sell").data["transaction_number"]
    reply = trade(api, "ObeliskCo", before + 2, "buy")
    assert (reply.status, reply.body) == (403, {"error": {"code": 403, "message": "Not enough stock"}})
    assert api.get("/stocks/ObeliskCo").data["quantity"] == before + 1
    # No transaction number was spent on the refused trade.
    assert trade(api, "ObeliskCo", 1, "buy").data["transaction_number"] == marker + 1
    assert shared_cluster.stocks()["ObeliskCo"][1] == before


def test_trade_of_unknown_stock_is_404(api):
    reply = trade(api, "NoSuchCo", 1, "buy")
    assert (reply.status, reply.body) == (404, {"error": {"code": 404, "message": "stock not found"}})


@pytest.mark.parametrize("body, field", [
    ({"quantity": 1, "type": "buy"}, "name"),
    ({"name": "FishCo", "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": 1}, "type"),
    ({"name": 12, "quantity": 1, "type": "buy"}, "name"),
    ({"name": "", "quantity": 1, "type": "buy"}, "name"),
    ({"name": "FishCo", "quantity": "1", "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": 1.0, "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": True, "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": 0, "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": -5, "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": 10**30, "type": "buy"}, "quantity"),
    ({"name": "FishCo", "quantity": 1, "type": "steal"}, "type"),
    ({"name": "FishCo", "quantity": 1, "type": None}, "type"),
])
def test_malformed_trade_is_400_naming_the_field(api, body, field):
    before = api.get("/stocks/FishCo").data["quantity"]
    reply = api.post("/orders", body)
    assert reply.status == 400
    assert reply.error["code"] == 400
    assert field in reply.error["message"]
    assert api.get("/stocks/FishCo").data["quantity"] == before


@pytest.mark.parametrize("raw, words", [
    (b"", "JSON object"),
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"null", "JSON object"),
    (b'{"name": "FishCo", "quantity": 1, "type": "buy"', "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
])
def test_body_that_is_not_a_json_object_is_400(api, raw, words):
    reply = api.request("POST", "/orders", raw=raw)
    assert reply.status == 400
    assert words in reply.error["message"]


def test_oversized_body_is_413(api):
    reply = api.request("POST", "/orders", raw=b'{"name": "' + b"a" * 20000 + b'"}')
    assert reply.status == 413
    assert reply.error["code"] == 413


def test_every_client_receives_the_413_of_an_oversized_body(shared_cluster):
    """A body far larger than the limit, on a new connection each time, as
    urllib sends it (``Connection: close``): the answer must arrive, not a
    reset because the server closed with the body unread."""
    body = b"x" * (2 * 1024 * 1024)
    url = f"http://127.0.0.1:{shared_cluster.http_ports[0]}/orders"
    outcomes = []
    for _ in range(60):
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
            outcomes.append("accepted")
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read())
            outcomes.append(exc.code if doc["error"]["code"] == exc.code else f"shape {doc}")
        except OSError as exc:
            outcomes.append(type(exc).__name__ + ": " + str(getattr(exc, "reason", exc)))
    assert outcomes == [413] * 60, [o for o in outcomes if o != 413][:5]


def test_idempotency_key_returns_the_first_result(api, shared_cluster):
    key = "test-key-0001"
    first = trade(api, "DruidTea", 3, "buy", **{"Idempotency-Key": key})
    again = trade(api, "DruidTea", 3, "buy", **{"Idempotency-Key": key})
    assert first.status == again.status == 200
    assert first.data == again.data
    log = shared_cluster.order_log(shared_cluster.leader())
    assert sum(1 for row in log if row[1] == key) == 1


def test_idempotency_key_reused_for_another_trade_is_422(api):
    key = "test-key-0002"
    assert trade(api, "DruidTea", 1, "sell", **{"Idempotency-Key": key}).status == 200
    reply = trade(api, "DruidTea", 2, "sell", **{"Idempotency-Key": key})
    assert reply.status == 422
    assert "Idempotency-Key" in reply.error["message"]


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\tkey"])
def test_malformed_idempotency_key_is_400(api, key):
    reply = trade(api, "DruidTea", 1, "sell", **{"Idempotency-Key": key})
    assert reply.status == 400
    assert "Idempotency-Key" in reply.error["message"]


# --- GET /orders/<n> ------------------------------------------------------------


def test_order_query_returns_what_the_trade_acknowledged(api):
    done = trade(api, "SaltPans", 5, "sell").data
    reply = api.get(f"/orders/{done['transaction_number']}")
    assert reply.status == 200
    assert reply.data == done


def test_unknown_order_number_is_409(api):
    reply = api.get("/orders/999999")
    assert (reply.status, reply.body) == (409, {"error": {"code": 409, "message": "Order number does not exist"}})


@pytest.mark.parametrize("number", ["-1", "abc", "1.5", "1e3", "99999999999999999999", "%201"])
def test_order_number_that_is_not_a_non_negative_integer_is_400(api, number):
    reply = api.get(f"/orders/{number}")
    assert reply.status == 400
    assert "non-negative integer" in reply.error["message"]


# --- DELETE /invalidate/<name>, /stats, and HTTP errors ---------------------------------


def test_invalidate_says_whether_the_stock_was_cached(api):
    api.get("/stocks/AmberCo")
    api.get("/stocks/AmberCo")
    cached = api.delete("/invalidate/AmberCo")
    assert (cached.status, cached.body) == (200, {"data": {"message": "Successfully invalidated"}})
    again = api.delete("/invalidate/AmberCo")
    assert again.body == {"data": {"message": "Stock not present"}}


def test_invalidate_without_cache_says_so(cluster_factory):
    cluster = cluster_factory(frontend_args=["--no-cache"])
    reply = cluster.api.delete("/invalidate/FishCo")
    assert reply.body == {"data": {"message": "Caching not enabled"}}
    assert cluster.api.get("/stats").data["cache"] == {"enabled": False}


def test_stats_reports_cache_and_leader(api):
    data = api.get("/stats").data
    assert data["leader"]["leader"] in (1, 2, 3)
    assert data["cache"]["enabled"] is True
    assert {"broker", "catalog", "order-1", "order-2", "order-3"} <= set(data["heard"])


def test_unknown_path_and_wrong_method_answer_in_the_error_shape(api):
    missing = api.get("/nothing/here")
    assert missing.status == 404 and missing.error["code"] == 404
    wrong = api.request("PUT", "/orders", body={})
    assert wrong.status == 405 and wrong.error["code"] == 405
