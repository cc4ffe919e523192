"""The client package, run as users run it (``python -m client ...``), against
real clusters and against a stub frontend that misbehaves on purpose.

* the seed's session against a cluster verifies every order and exits 0, and
  the order log holds exactly its acknowledged trades;
* a session exits non-zero when the server's orders differ or are missing,
  and resends a trade with the same Idempotency-Key after a 503;
* the benchmark, with tiny settings, against the fixture's cluster and with
  ``--spawn``, writes its JSON, CSV and PNG files with sane figures and
  leaves no process behind.

Every process a test starts is stopped at the end (the benchmark's servers
by the benchmark, and by the test from its ``pids.json`` if it did not).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cluster import ROOT, wait_until

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_client(args: list[str], timeout: float, out_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m client <args>`` in its own process group, bounded by ``timeout``.

    On a timeout the client gets SIGTERM (it stops what it started), then its
    group SIGKILL; whatever its ``pids.json`` names is killed too.
    """
    proc = subprocess.Popen([sys.executable, "-m", "client", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"python -m client {' '.join(args)} ran over {timeout}s:\n{out}")
    finally:
        _killpg(proc.pid)
        if out_dir is not None:
            kill_leftovers(out_dir)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def _killpg(pgid: int) -> bool:
    """SIGKILL a process group; True if it still had a process."""
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def kill_leftovers(out_dir: Path) -> list[int]:
    """Kill every process group the benchmark's ``pids.json`` names; returns
    those that were still there (none, if the benchmark cleaned up)."""
    path = out_dir / "pids.json"
    if not path.exists():
        return []
    return [pgid for pgid in json.loads(path.read_text())["pgids"] if _killpg(pgid)]


# --- the session ------------------------------------------------------------------


def test_session_against_a_cluster_verifies_every_order(cluster_factory):
    cluster = cluster_factory()
    result = run_client(["session", "--config", str(cluster.config_path), "-n", "300", "-p", "0.6", "--seed", "7"],
                        timeout=90)
    assert result.returncode == 0, result.stdout
    assert "http.client" in result.stdout
    acked = int(re.search(r"trades: (\d+) acknowledged", result.stdout).group(1))
    verified = int(re.search(r"verified: all (\d+) acknowledged", result.stdout).group(1))
    assert acked == verified > 100  # p = 0.6 of 300 lookups
    # Each acknowledged trade is in the log exactly once, and nothing else is.
    assert len(cluster.trades(cluster.leader())) == acked


def test_a_session_rides_out_a_frontend_restart(cluster_factory):
    """SIGKILL the frontend mid-session, start it again: connections are
    refused or reset meanwhile, and the session resends (same keys) until the
    frontend answers, then verifies every order and says what the outage cost."""
    cluster = cluster_factory()
    args = [sys.executable, "-m", "client", "session", "--config", str(cluster.config_path), "-n", "1500",
            "-p", "1.0", "--seed", "3"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_until(lambda: len(cluster.trades(cluster.leader())) >= 100, 60, "100 trades of the session")
        cluster.frontend.kill()
        cluster.frontend.start()
        out, _ = proc.communicate(timeout=120)
    finally:
        _killpg(proc.pid)
    assert proc.returncode == 0, out
    assert "note: the frontend is unreachable" in out and "answers again" in out
    resent = int(re.search(r"(\d+) requests resent while it was down", out).group(1))
    assert resent >= 1
    acked = int(re.search(r"trades: (\d+) acknowledged", out).group(1))
    assert re.search(rf"verified: all {acked} acknowledged", out)
    assert len(cluster.trades(cluster.leader())) == acked  # no trade applied twice


class StubFrontend:
    """A frontend that answers from a script, on a free port, in a thread.

    :param mode: ``wrong-orders`` (order 1 differs, order 2 is missing) or
        ``first-503`` (the first send of every Idempotency-Key gets a 503).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.orders: dict[int, dict] = {}
        self.keys: dict[str, int] = {}      # key -> sends seen
        self.by_key: dict[str, dict] = {}
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def reply(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/stocks/"):
                    self.reply(200, {"data": {"name": self.path[8:], "price": 1.0, "quantity": 100}})
                    return
                status, doc = stub.order(int(self.path.rsplit("/", 1)[1]))
                self.reply(status, doc)

            def do_POST(self) -> None:
                order = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, doc = stub.trade(self.headers.get("Idempotency-Key"), order)
                self.reply(status, doc)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def trade(self, key: str, order: dict) -> tuple[int, dict]:
        with self.lock:
            self.keys[key] = self.keys.get(key, 0) + 1
            if self.mode == "first-503" and self.keys[key] == 1:
                return 503, {"error": {"code": 503, "message": "no order leader answered"}}
            if key not in self.by_key:
                txn = len(self.orders)
                self.orders[txn] = {"transaction_number": txn, "name": order["name"],
                                    "quantity": order["quantity"], "type": order["type"]}
                self.by_key[key] = self.orders[txn]
            return 200, {"data": self.by_key[key]}

    def order(self, txn: int) -> tuple[int, dict]:
        with self.lock:
            if txn not in self.orders or (self.mode == "wrong-orders" and txn == 2):
                return 409, {"error": {"code": 409, "message": "Order number does not exist"}}
            found = dict(self.orders[txn])
            if self.mode == "wrong-orders" and txn == 1:
                found["quantity"] += 1
            return 200, {"data": found}

    def __enter__(self) -> StubFrontend:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_session_fails_when_orders_differ_or_are_missing():
    with StubFrontend("wrong-orders") as stub:
        result = run_client(["session", "--host", "127.0.0.1", "--port", str(stub.port), "--stocks", "A,B",
                             "-n", "20", "-p", "1", "--seed", "1"], timeout=30)
    assert result.returncode == 1, result.stdout
    assert "FAILED: 18/20 acknowledged trades verified, 2 mismatches" in result.stdout
    assert "differs: order 1" in result.stdout and "missing: order 2" in result.stdout


def test_a_trade_answered_503_is_resent_with_the_same_key_and_applied_once():
    with StubFrontend("first-503") as stub:
        result = run_client(["session", "--host", "127.0.0.1", "--port", str(stub.port), "--stocks", "A,B",
                             "-n", "15", "-p", "1", "--seed", "2"], timeout=30)
    assert result.returncode == 0, result.stdout
    assert len(stub.keys) == 15 and set(stub.keys.values()) == {2}  # each key sent twice
    assert len(stub.orders) == 15  # and applied once
    assert "HTTP 503" in result.stdout


def test_a_session_without_a_frontend_says_so():
    from common.sockets import free_tcp_ports

    (port,) = free_tcp_ports(1)
    result = run_client(["session", "--host", "127.0.0.1", "--port", str(port), "--stocks", "A", "-n", "3"],
                        timeout=30)
    assert result.returncode == 3, result.stdout
    assert "never answered" in result.stdout


# --- the benchmark ------------------------------------------------------------------


def check_results(out_dir: Path, clients: int, iterations: int, p_values: list[float], rounds: int) -> dict:
    """The files are there and the figures add up."""
    for name in ("results.json", "results.csv", "lookup_latency.png", "trade_latency.png", "throughput.png"):
        assert (out_dir / name).stat().st_size > 0, name
    for name in ("lookup_latency.png", "trade_latency.png", "throughput.png"):
        assert (out_dir / name).read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((out_dir / "results.json").read_text())
    phases = doc["phases"]
    assert len(phases) == 4 * rounds + 2 * len(p_values)
    assert sorted({ph["p"] for ph in phases if ph["group"] == "sweep"}) == sorted(p_values)
    rows = 0
    for ph in phases:
        kinds = ph["kinds"]
        for kind, s in kinds.items():
            rows += 1
            assert s["ok"] + s["failed"] == s["count"]
            assert s["answered"] <= s["count"]
            assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"], (ph["label"], kind, s)
            assert s["throughput_rps"] > 0
        main = "roundtrip" if ph["target"] == "zmq" else "lookup"
        assert kinds[main]["count"] == clients * iterations, ph["label"]  # no loop hit its time cap
        v = ph["verification"]
        assert v["mismatches"] == 0 and v["unsettled"] == 0, v
        if ph["p"] == 0:
            assert set(kinds) == {main}
        else:
            trades = kinds["trade"]
            assert v["unknown"] == 0, trades["failures"]  # a healthy cluster answers every trade
            assert trades["count"] <= kinds["lookup"]["ok"]  # at most one trade per successful lookup
            assert v["acked"] + v["refused"] + v["errors"] == trades["count"]
            assert v["acked"] == v["verified"] == trades["ok"] == kinds["order"]["ok"] == kinds["order"]["count"]
    with (out_dir / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == rows
    ratios = doc["ratios"]
    assert len(ratios["targets"]) == 7
    assert all(t["verdict"] in ("met", "not met", "no data") for t in ratios["targets"].values())
    if rounds and max(p_values) > 0:
        trading = ratios["trading"]
        assert trading["trade_p50_ms"] > 0 and trading["trades_per_s"] > 0
        assert 0 < trading["server_cpu_ms_per_iteration"] < sum(trading["cpu_ms_per_iteration"].values())
        assert {"catalog", "bench-cache"} <= set(trading["cpu_ms_per_iteration"])
    if rounds:
        assert ratios["cached_over_bare_throughput"]["median"] > 0
        assert ratios["zmq_roundtrip_p50_ms"]["median"] > 0
        assert ratios["cached_over_bare_cpu"]["n"] >= 1  # the frontend's CPU per cached lookup, against the bare route's
    return doc


def test_bench_against_a_running_cluster_writes_sane_figures(cluster_factory, tmp_path):
    cluster = cluster_factory()
    out = tmp_path / "bench"
    result = run_client(["bench", "--config", str(cluster.config_path), "--clients", "2", "--p", "0", "0.5",
                         "-n", "20", "--baseline-rounds", "1", "--max-seconds", "30", "--out", str(out)],
                        timeout=120, out_dir=out)
    assert result.returncode == 0, result.stdout
    doc = check_results(out, clients=2, iterations=20, p_values=[0.0, 0.5], rounds=1)
    assert doc["meta"]["client"].startswith("http.client")
    for said in ("client: http.client", "started frontend bench-cache", "started frontend bench-nocache",
                 "stopped bench-cache", "stopped bench-nocache", "stopped bare-route", "stopped zmq-echo"):
        assert said in result.stdout, said
    assert kill_leftovers(out) == []  # the benchmark stopped everything it started
    assert cluster.api.get("/stocks/GameStart").status == 200  # and left the cluster alone


def test_bench_with_spawn_starts_and_stops_a_private_cluster(tmp_path):
    out = tmp_path / "bench"
    result = run_client(["bench", "--spawn", "--clients", "1", "--p", "0.5", "-n", "10", "--baseline-rounds", "0",
                         "--max-seconds", "30", "--out", str(out)], timeout=120, out_dir=out)
    assert result.returncode == 0, result.stdout
    check_results(out, clients=1, iterations=10, p_values=[0.5], rounds=0)
    assert "stopped the private cluster" in result.stdout
    assert kill_leftovers(out) == []


def test_open_loop_sweep_reports_latency_from_due_time_and_each_kinds_capacity(tmp_path):
    out = tmp_path / "bench"
    result = run_client(["bench", "--spawn", "--clients", "2", "-n", "40", "--open-loop-only", "--rate", "20:40:x2",
                         "--arrival", "constant", "--p99-bound-ms", "2000", "--out", str(out)], timeout=180,
                        out_dir=out)
    assert result.returncode == 0, result.stdout
    assert (out / "capacity.png").read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((out / "results.json").read_text())
    phases = doc["phases"]
    assert {(ph["kind_label"], ph["offered_rps"]) for ph in phases} == {
        (label, rate) for label in ("bare route", "cached lookup", "trade") for rate in (20.0, 40.0)}
    for ph in phases:
        s = ph["kinds"][ph["request_kind"]]
        # every request of the schedule was sent and answered (a 403 for want of stock is a refusal, not an error)
        assert s["count"] == ph["planned"] == 40 and s["errors"] == 0, (ph["label"], s)
        assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["p999_ms"] <= s["max_ms"]
        assert ph["passed"], ph["label"]
    capacity = doc["capacity"]
    for label in ("bare route", "cached lookup", "trade"):
        k = capacity["kinds"][label]
        assert (k["capacity_rps"], k["censored"]) == (40.0, True)  # passed the highest rate: at least 40/s
    assert capacity["kinds"]["cached lookup"]["over_bare_meaning"] == "unknown"
    assert "open-loop capacity at p99 < 2000 ms: trades / bare route" in doc["ratios"]["targets"]
    summary = (out / "summary.md").read_text()
    assert "| trade | >= 40/s | - | 1.000 (unknown) |" in summary
    with (out / "results.csv").open() as fh:
        assert {row["offered_rps"] for row in csv.DictReader(fh)} == {"20.0", "40.0"}
    assert kill_leftovers(out) == []


def test_open_loop_options_are_checked_before_anything_starts(tmp_path):
    for args, says in ((["--rate", "fast"], "not a rate"), (["--open-loop-only"], "needs --rate"),
                       (["--rate", "100:10:x2"], "below the start")):
        result = run_client(["bench", "--spawn", *args, "--out", str(tmp_path / "x")], timeout=30)
        assert result.returncode == 2 and says in result.stdout, result.stdout
        assert not (tmp_path / "x").exists()
