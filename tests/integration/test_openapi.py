"""The API's OpenAPI description (frontend/openapi.json) against a live cluster.

Schemathesis generates requests from the description (its explicit examples,
its coverage cases: boundaries, missing and wrong-typed fields, methods a
path does not list; then seeded fuzzing, valid and invalid) and sends each
to a real frontend. Every answer must carry a status the description lists
for that operation, in the media type and schema listed for it (so every
failure is the ``{"error": {"code", "message"}}`` shape); never a 500 and
never a closed or reset connection; and a ``POST /orders`` the API refuses
changes no stock and spends no transaction number.

Bounded and reproducible: a fixed number of examples per operation, a fixed
seed, derandomized, no example database.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from frontend.routes import api as blueprint
from harness.process import ROOT

pytestmark = pytest.mark.slow

SPEC = ROOT / "frontend" / "openapi.json"
MAX_EXAMPLES = 150  # per operation, for the fuzzing phase (examples and coverage add a bounded set)
SEED = 19
REQUEST_TIMEOUT_S = 10.0

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    # A 503 is in the description (a backend did not answer in time); a 500 or a 502 never is.
    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "4xx", "503"]}},
})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, unsupported_method, allow_header_conformance]
# A trade that was sent and got no answer may have happened (docs/PROTOCOL.md 10): its 503 says so.
OUTCOME_UNKNOWN = "may or may not have happened"


def base_url(cluster) -> str:
    return f"http://{cluster.http_host()}:{cluster.http_ports[0]}"


# The file in the repository; test_the_frontend_serves_the_description_in_the_repository
# checks that the live frontend serves these very bytes. (schemathesis.pytest.from_fixture,
# which would load it from the live frontend, breaks on pytest 9.2: it sets Node._nodeid.)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)


def ledger(cluster) -> tuple[dict, int]:
    """What a trade changes: the catalog's table once it has applied what a
    majority of replicas hold, and the last transaction number of any replica."""
    stocks = cluster.stocks()
    last_txn = max((row[0] for i in range(1, cluster.replicas + 1) for row in cluster.trades(i)), default=0)
    return stocks, last_txn


@schema.parametrize()
def test_every_answer_is_one_the_description_lists(case, shared_cluster):
    trade = case.method == "POST" and case.path == "/orders"
    before = ledger(shared_cluster) if trade else None
    response = case.call(base_url=base_url(shared_cluster), timeout=REQUEST_TIMEOUT_S)
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    if status >= 300:
        assert response.headers.get("content-type") == ["application/json"], response.headers
        body = response.json()
        assert body == {"error": {"code": status, "message": body["error"]["message"]}}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if trade and response.request.method == "POST" and OUTCOME_UNKNOWN not in body["error"]["message"]:
            assert ledger(shared_cluster) == before, f"a refused trade ({status} {body}) changed the ledger"


def test_the_frontend_serves_the_description_in_the_repository(shared_cluster):
    reply = requests.get(f"{base_url(shared_cluster)}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.content == SPEC.read_bytes()
    document = reply.json()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # raises if it breaks the OpenAPI 3.1 schema


def test_every_route_is_described():
    """Every path and method Flask routes (HEAD and OPTIONS aside) is an
    operation of the description, and the description names nothing else."""
    app = Flask(__name__)
    app.register_blueprint(blueprint)
    routed = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    document = json.loads(SPEC.read_text())
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routed == described
