"""The frontend's HTTP server (frontend/server.py, gevent.pywsgi) at the byte
level: what it answers to requests Flask never sees, keep-alive, limits,
several frontends on one host, and a graceful stop on SIGTERM that answers
every request in flight. The seed's API itself is tests/integration/test_api.py."""

from __future__ import annotations

import http.client
import json
import socket
import signal
import threading

import pytest

from frontend.server import DISCARD_MAX_BYTES as SERVER_DISCARD_MAX_BYTES
from harness.cluster import Http, wait_until

pytestmark = pytest.mark.slow


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server sends back until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


@pytest.mark.parametrize("request_bytes,status,words", [
    (b"NONSENSE\r\n\r\n", 400, "malformed request"),
    (b"GET /stocks/FishCo HTTP/9.9\r\nHost: x\r\n\r\n", 400, "malformed request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line longer than 4094 bytes"),
    (b"GET /stocks/FishCo HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n", 431,
     "headers"),
    (b"GET /stocks/FishCo HTTP/1.1\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431, "longer than 8190 bytes"),
    (b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "malformed request"),
], ids=["no request line", "bad version", "long request line", "too many headers", "long header", "bad length"])
def test_a_request_the_server_refuses_itself_gets_the_api_error_shape(shared_cluster, request_bytes, status, words):
    got, headers, body = parse(raw_exchange(shared_cluster.http_ports[0], request_bytes))
    assert got == status and headers["content-type"] == "application/json"
    assert body["error"]["code"] == status and words in body["error"]["message"]
    assert shared_cluster.frontend.alive
    assert shared_cluster.api.get("/stocks/FishCo").status == 200


def test_a_broken_chunked_body_gets_one_answer_and_the_connection_closes(shared_cluster):
    before = shared_cluster.api.get("/stocks/FishCo").data["quantity"]
    with socket.create_connection(("127.0.0.1", shared_cluster.http_ports[0]), timeout=5) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/json\r\n\r\n5\r\n{\"nam\r\nZZ\r\n")
        chunks = []
        while chunk := sock.recv(65536):  # the server closes the connection after its one answer
            chunks.append(chunk)
    response = b"".join(chunks)
    assert response.count(b"HTTP/1.1 ") == 1, response
    status, _, body = parse(response)
    assert status == 400 and body["error"]["code"] == 400
    assert shared_cluster.api.get("/stocks/FishCo").data["quantity"] == before


def test_a_body_longer_than_the_server_drops_is_cut_off_after_the_answer(shared_cluster):
    """A client that declares a huge body and keeps sending: the 413 goes out,
    and the server reads no more than its bound (64 MiB) after the answer
    before it closes the connection."""
    limit = SERVER_DISCARD_MAX_BYTES
    chunk = b"\0" * (1024 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", shared_cluster.http_ports[0]), timeout=10) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000000\r\n\r\n")
        with pytest.raises(OSError):  # reset or broken pipe: the server stopped reading
            while sent < 3 * limit:
                sock.sendall(chunk)
                sent += len(chunk)
    assert sent <= limit + 16 * 1024 * 1024  # what the kernel's buffers may hold on top
    assert shared_cluster.api.get("/stocks/FishCo").status == 200


def test_keep_alive_serves_many_requests_on_one_connection(shared_cluster):
    conn = http.client.HTTPConnection("127.0.0.1", shared_cluster.http_ports[0], timeout=5)
    try:
        conn.connect()
        local = conn.sock.getsockname()
        for _ in range(50):
            conn.request("GET", "/stocks/FishCo")
            reply = conn.getresponse()
            assert reply.status == 200 and json.loads(reply.read())["data"]["name"] == "FishCo"
        assert conn.sock.getsockname() == local  # the very same connection throughout
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) is not None
    finally:
        conn.close()


def test_an_oversized_body_on_a_reused_connection_gets_413_and_the_connection_goes_on(shared_cluster):
    conn = http.client.HTTPConnection("127.0.0.1", shared_cluster.http_ports[0], timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/stocks/FishCo")
            assert conn.getresponse().read() and True
            conn.request("POST", "/orders", body=b"x" * 100_000, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.status == 413
            assert json.loads(reply.read())["error"]["code"] == 413
            if reply.getheader("Connection", "").lower() == "close":
                conn.close()  # the server may close after draining; a new connection must work too
    finally:
        conn.close()


def test_several_frontends_on_one_host_each_with_its_port_and_name(cluster_factory):
    cluster = cluster_factory(frontends=2)
    names = set()
    for port in cluster.http_ports:
        stats = cluster.http(port).get("/stats").data
        names.add(stats["node"])
        assert cluster.http(port).get("/stocks/FishCo").status == 200
    assert names == {"frontend", "frontend-2"}


def test_a_second_frontend_on_a_taken_port_says_so_and_exits_2(shared_cluster, tmp_path):
    import subprocess
    import sys

    from harness.cluster import ROOT

    done = subprocess.run([sys.executable, "-m", "frontend", "--config", str(shared_cluster.config_path),
                           "--port", str(shared_cluster.http_ports[0]), "--name", "intruder"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot listen on" in done.stderr and str(shared_cluster.http_ports[0]) in done.stderr


class TestGracefulStop:
    """SIGTERM with requests in flight: each is answered, then the process
    exits 0; nothing new is accepted meanwhile."""

    def test_every_request_in_flight_is_answered_and_the_frontend_exits_0(self, cluster_factory):
        cluster = cluster_factory()
        api = cluster.api
        assert api.post("/orders", {"name": "FishCo", "quantity": 1, "type": "buy"}).status == 200
        leader = cluster.leader()
        sent_before = cluster.stats()["backend"]["order_calls"]
        cluster.replica(leader).pause()  # the trades below wait at the hung leader: in flight
        replies: dict[int, object] = {}

        def trade(k: int) -> None:
            client = Http(cluster.http_ports[0], timeout=30)
            try:
                replies[k] = client.post("/orders", {"name": "BoarCo", "quantity": 1, "type": "sell"},
                                         headers={"Idempotency-Key": f"in-flight-{k}"})
            except OSError as exc:
                replies[k] = exc
            finally:
                client.close()

        threads = [threading.Thread(target=trade, args=(k,)) for k in range(5)]
        for t in threads:
            t.start()
        wait_until(lambda: cluster.stats()["backend"]["order_calls"] >= sent_before + 5, 10,
                   "the five trades to reach the backend")
        cluster.frontend.signal(signal.SIGTERM)
        wait_until(lambda: "stopping: answering the requests in flight" in cluster.frontend.log(), 10,
                   "the frontend to begin its stop")
        cluster.replica(leader).resume()
        for t in threads:
            t.join(timeout=30)
        assert all(getattr(r, "status", None) == 200 for r in replies.values()), replies
        assert cluster.frontend.proc.wait(timeout=15) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", cluster.http_ports[0]), timeout=2).close()
