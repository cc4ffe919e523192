"""``POST /orders`` body checks (frontend.routes.parse_trade): every malformed
body raises :class:`BadRequest` whose message names what is wrong."""

from __future__ import annotations

import json

import pytest

from common.protocol import MAX_NAME_LENGTH, MAX_TRADE_QUANTITY
from frontend.routes import BadRequest, parse_trade


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


VALID = [
    (body(name="GameStart", quantity=1, type="buy"), ("GameStart", 1, "buy")),
    (body(name="FishCo", quantity=MAX_TRADE_QUANTITY, type="sell"), ("FishCo", MAX_TRADE_QUANTITY, "sell")),
    (body(name="x" * MAX_NAME_LENGTH, quantity=3, type="buy"), ("x" * MAX_NAME_LENGTH, 3, "buy")),
    (body(name="NoSuchStock", quantity=3, type="buy"), ("NoSuchStock", 3, "buy")),  # the catalog decides
    (body(name="GameStart", quantity=2, type="buy", note="extra keys are ignored"), ("GameStart", 2, "buy")),
    ('  \n{"type": "sell", "quantity": 7, "name": "BoarCo"}\n '.encode(), ("BoarCo", 7, "sell")),
    ('{"name": "Caf\u00e9", "quantity": 1, "type": "buy"}'.encode(), ("Caf\u00e9", 1, "buy")),
    (b'{"name": "A", "quantity": 1, "quantity": 2, "type": "buy"}', ("A", 2, "buy")),  # last key wins
]


@pytest.mark.parametrize("raw,expected", VALID, ids=range(len(VALID)))
def test_valid_bodies(raw, expected):
    assert parse_trade(raw) == expected


# (body, words the message must contain)
MALFORMED = [
    (b"", "request body must be a JSON object"),
    (b"   \n\t", "request body must be a JSON object"),
    (b"{", "not valid JSON"),
    (b"name=GameStart&quantity=1&type=buy", "not valid JSON"),
    (b'{"name": "GameStart", "quantity": 1, "type": "buy",}', "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # too deep for the parser
    (b"[]", "must be a JSON object"),
    (b'[{"name": "GameStart", "quantity": 1, "type": "buy"}]', "must be a JSON object"),
    (b'"GameStart"', "must be a JSON object"),
    (b"1", "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b"{}", "missing fields: name, quantity, type"),
    (body(quantity=1, type="buy"), "missing field: name"),
    (body(name="GameStart", type="buy"), "missing field: quantity"),
    (body(name="GameStart", quantity=1), "missing field: type"),
    (body(name="GameStart"), "missing fields: quantity, type"),
    (body(name=None, quantity=1, type="buy"), "name must be a string"),
    (body(name=5, quantity=1, type="buy"), "name must be a string"),
    (body(name=["GameStart"], quantity=1, type="buy"), "name must be a string"),
    (body(name="", quantity=1, type="buy"), "name must be a string of 1 to 64"),
    (body(name="x" * (MAX_NAME_LENGTH + 1), quantity=1, type="buy"), "name must be a string of 1 to 64"),
    (body(name="GameStart", quantity="1", type="buy"), "quantity must be an integer"),
    (body(name="GameStart", quantity=1.0, type="buy"), "quantity must be an integer"),
    (body(name="GameStart", quantity=1.5, type="buy"), "quantity must be an integer"),
    (body(name="GameStart", quantity=True, type="buy"), "quantity must be an integer"),
    (body(name="GameStart", quantity=None, type="buy"), "quantity must be an integer"),
    (body(name="GameStart", quantity=[1], type="buy"), "quantity must be an integer"),
    (b'{"name": "GameStart", "quantity": NaN, "type": "buy"}', "quantity must be an integer"),
    (b'{"name": "GameStart", "quantity": Infinity, "type": "buy"}', "quantity must be an integer"),
    (b'{"name": "GameStart", "quantity": 1e3, "type": "buy"}', "quantity must be an integer"),
    (body(name="GameStart", quantity=0, type="buy"), "quantity must be a positive integer"),
    (body(name="GameStart", quantity=-1, type="buy"), "quantity must be a positive integer"),
    (body(name="GameStart", quantity=-(10**30), type="buy"), "quantity must be a positive integer"),
    (body(name="GameStart", quantity=MAX_TRADE_QUANTITY + 1, type="buy"), "quantity must be at most 1000000"),
    (body(name="GameStart", quantity=10**30, type="buy"), "quantity must be at most 1000000"),
    (body(name="GameStart", quantity=1, type="BUY"), 'type must be "buy" or "sell"'),
    (body(name="GameStart", quantity=1, type="hold"), 'type must be "buy" or "sell"'),
    (body(name="GameStart", quantity=1, type=""), 'type must be "buy" or "sell"'),
    (body(name="GameStart", quantity=1, type=None), 'type must be "buy" or "sell"'),
    (body(name="GameStart", quantity=1, type=["buy"]), 'type must be "buy" or "sell"'),
    (body(name="GameStart", quantity=1, type=1), 'type must be "buy" or "sell"'),
]


@pytest.mark.parametrize("raw,words", MALFORMED, ids=[w[:40] + f"#{i}" for i, (_, w) in enumerate(MALFORMED)])
def test_malformed_bodies(raw, words):
    with pytest.raises(BadRequest) as info:
        parse_trade(raw)
    assert words in str(info.value)


def test_the_first_wrong_field_is_named_in_field_order():
    # name is checked before quantity, quantity before type.
    with pytest.raises(BadRequest, match="^name"):
        parse_trade(body(name="", quantity=0, type="x"))
    with pytest.raises(BadRequest, match="^quantity"):
        parse_trade(body(name="A", quantity=0, type="x"))


def test_an_unhashable_type_value_is_a_bad_request_not_a_crash():
    with pytest.raises(BadRequest, match="type"):
        parse_trade(body(name="A", quantity=1, type={"buy": True}))
