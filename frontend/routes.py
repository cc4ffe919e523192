"""The HTTP API: the seed's endpoints, byte for byte, ``GET /stats``,
``GET /metrics`` (Prometheus, :mod:`frontend.metrics`) and ``GET /openapi.json``
(the API's OpenAPI 3.1 description, ``frontend/openapi.json``).

Every answer is JSON but the metrics' scrape. Success is ``{"data": ...}``;
every failure, including unknown paths, wrong methods and oversized bodies
(on ``/metrics`` too), is ``{"error": {"code": <HTTP status>, "message": ...}}``
with that status.
A bad request changes nothing.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import time
import uuid

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from common.errors import RemoteError
from common.logs import get_logger
from common.protocol import MAX_NAME_LENGTH, MAX_REQUEST_ID_LENGTH, ErrorCode, trade_problem
from common.trace import TRACE_HEADER

from .backend import Unavailable
from .metrics import render

log = get_logger(__name__)
api = Blueprint("api", __name__)

MAX_TXN = 2**63 - 1
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_REQUEST_ID_LENGTH)
_DIGITS = re.compile(r"[0-9]{1,19}")
# Where the application keeps frontend/openapi.json's bytes (read once, at registration).
_OPENAPI = "bazaar.openapi"

# How the order and catalog services' error codes read over HTTP (the seed's words).
HTTP_ERRORS = {
    ErrorCode.STOCK_NOT_FOUND: (404, "stock not found"),
    ErrorCode.NOT_ENOUGH_STOCK: (403, "Not enough stock"),
    ErrorCode.ORDER_NOT_FOUND: (409, "Order number does not exist"),
    ErrorCode.KEY_REUSED: (422, "Idempotency-Key was already used for a different order"),
}


class BadRequest(Exception):
    """The client's request is malformed; the message says what to fix."""


def error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": status, "message": message}}), status


def _state():
    return current_app.extensions["bazaar"]


# --- endpoints ----------------------------------------------------------------


@api.record_once
def _load_description(setup) -> None:
    """Read ``openapi.json`` (shipped as package data) once, when the app is
    created; a file that is not JSON stops the start here."""
    raw = importlib.resources.files(__package__).joinpath("openapi.json").read_bytes()
    json.loads(raw)
    setup.app.extensions[_OPENAPI] = raw


# merge_slashes=False: werkzeug would answer a "//" in the path with a 308
# redirect in HTML; a name or number that starts with "/" is a 404 like any
# other path no route matches.
@api.get("/stocks/<path:name>", merge_slashes=False)
def lookup(name: str):
    if len(name) > MAX_NAME_LENGTH:
        return error(400, f"stock name must be at most {MAX_NAME_LENGTH} characters")
    stock = _state().backend.lookup(name)
    return jsonify({"data": {"name": stock.name, "price": stock.price, "quantity": stock.quantity}})


@api.post("/orders")
def place_order():
    trace = {"fe_start": time.monotonic()} if TRACE_HEADER in request.headers else None
    name, quantity, side = parse_trade(request.get_data(cache=False))
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _KEY_PATTERN.fullmatch(key):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_REQUEST_ID_LENGTH} visible ASCII characters")
    done = _state().backend.trade(key or uuid.uuid4().hex, name, quantity, side, trace)
    response = jsonify({"data": {"transaction_number": done.txn, "name": done.name, "quantity": done.quantity,
                                 "type": done.side}})
    if trace is not None:  # common.trace: the stamps of every hop, for the benchmark
        trace["fe_end"] = time.monotonic()
        response.headers[TRACE_HEADER] = json.dumps(trace, separators=(",", ":"))
    return response


@api.get("/orders/<path:number>", merge_slashes=False)
def get_order(number: str):
    if not _DIGITS.fullmatch(number) or int(number) > MAX_TXN:
        raise BadRequest("order number must be a non-negative integer")
    order = _state().backend.order(int(number))
    return jsonify({"data": {"transaction_number": order.txn, "name": order.name, "quantity": order.quantity,
                             "type": order.side}})


@api.delete("/invalidate/<path:name>", merge_slashes=False)
def invalidate(name: str):
    state = _state()
    if state.cache is None:
        message = "Caching not enabled"
    else:
        with state.lock:
            message = "Successfully invalidated" if state.cache.invalidate(name) else "Stock not present"
    return jsonify({"data": {"message": message}})


@api.get("/stats")
def stats():
    return jsonify({"data": _state().stats()})


@api.get("/metrics")
def metrics():
    """The Prometheus text format (OpenMetrics when the scraper asks for it)."""
    body, content_type = render(_state().metrics, request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@api.get("/openapi.json")
def openapi():
    """This API's OpenAPI 3.1 description, as the file ships."""
    return Response(current_app.extensions[_OPENAPI], content_type="application/json")


# --- request parsing ----------------------------------------------------------


def parse_trade(body: bytes) -> tuple[str, int, str]:
    """Check a ``POST /orders`` body.

    :returns: ``(name, quantity, type)``.
    :raises BadRequest: naming the field that is wrong.
    """
    if not body.strip():
        raise BadRequest('request body must be a JSON object like {"name": "GameStart", "quantity": 1, "type": "buy"}')
    try:
        order = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(order, dict):
        raise BadRequest("request body must be a JSON object")
    missing = [f for f in ("name", "quantity", "type") if f not in order]
    if missing:
        raise BadRequest(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    name, quantity, side = order["name"], order["quantity"], order["type"]
    problem = trade_problem(None, name, quantity, side, side_field="type")  # the protocol's one check
    if problem:
        raise BadRequest(problem)
    try:  # JSON escapes can make a lone surrogate, which no backend message can carry
        name.encode()
    except UnicodeEncodeError:
        raise BadRequest("name must be valid Unicode: it holds a lone surrogate (\\ud800 to \\udfff)") from None
    return name, quantity, side


# --- errors -------------------------------------------------------------------


@api.app_errorhandler(BadRequest)
def on_bad_request(exc: BadRequest):
    return error(400, str(exc))


@api.app_errorhandler(RemoteError)
def on_remote_error(exc: RemoteError):
    status, message = HTTP_ERRORS.get(exc.code, (502, f"backend error: {exc.message}"))
    if status == 502:
        log.error("unexpected backend error", code=exc.code, message=exc.message)
    return error(status, message)


@api.app_errorhandler(Unavailable)
def on_unavailable(exc: Unavailable):
    response, status = error(503, exc.message)
    response.headers["Retry-After"] = "1"
    return response, status


@api.app_errorhandler(HTTPException)
def on_http_error(exc: HTTPException):
    # A 413 is decided from the headers; the server reads and drops the body after
    # the answer (frontend/server.py), so a client still sending gets it, not a reset.
    messages = {
        404: f"no such endpoint: {request.method} {request.path}",
        405: f"method {request.method} is not allowed on {request.path}",
        413: f"request body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes",
    }
    response, status = error(exc.code or 500, messages.get(exc.code, exc.description or exc.name))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110: a 405 lists what is allowed
    return response, status


@api.app_errorhandler(Exception)
def on_crash(exc: Exception):
    log.exception("request failed", path=request.path)
    return error(500, "internal error; the request may not have been carried out")
