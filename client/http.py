"""A light keep-alive HTTP client for the Bazaar API.

The client is the standard library's :mod:`http.client` on one persistent
connection. Measured on the development machine
(``shared/measurements/machine-limits.md``, section 6), it costs about 70 us of
client CPU per request, against about 400 us for ``requests`` and 270 us for
``httpx``; in a benchmark whose clients share two cores with the server, that
difference is the difference between measuring the server and measuring the
client. One :class:`HttpClient` holds one connection and is used by one
thread; the benchmark runs one per worker process.

Every call returns a :class:`Reply` and never raises for an HTTP status or a
broken connection: a request that got no answer comes back with
``status == 0`` and the reason in ``error``. Idempotent requests (``GET``)
are sent once more on a fresh connection when a kept-alive connection turns
out to be closed; a trade is resent only by its caller, with the same
``Idempotency-Key`` (:mod:`client.session`).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

CLIENT_NAME = "http.client (standard library), one keep-alive connection per client process"
# How long one request may wait for its answer.
REQUEST_TIMEOUT_S = 10.0
# Status of a request that got no HTTP answer at all.
NO_ANSWER = 0

# Failures that mean nobody is listening (or the server went away mid-request).
UNREACHABLE = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
               http.client.RemoteDisconnected)

_JSON_HEADERS = {"Content-Type": "application/json"}
_NO_HEADERS: dict[str, str] = {}
_UNPARSED = object()


class Reply:
    """One answer (or the lack of one).

    The body of a successful answer is parsed only when :attr:`body` or
    :attr:`data` is read (a lookup whose answer nobody reads costs no JSON
    parsing); an error answer is parsed at once for its message.

    :param status: the HTTP status, or :data:`NO_ANSWER` (0).
    :param payload: the raw body.
    :param elapsed_s: wall time from sending to the last byte read.
    :param error: why there is no answer (status 0), or the API's error message.
    """

    __slots__ = ("status", "payload", "elapsed_s", "error", "unreachable", "_body")

    def __init__(self, status: int, payload: bytes, elapsed_s: float, error: str = "",
                 unreachable: bool = False) -> None:
        self.status = status
        self.payload = payload
        self.elapsed_s = elapsed_s
        self.error = error
        #: No answer because the connection was refused, reset or closed: the
        #: server is down or restarting (a timeout is not this).
        self.unreachable = unreachable
        self._body: Any = _UNPARSED

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def body(self) -> Any:
        """The parsed JSON body, or None if there is none or it is not JSON."""
        if self._body is _UNPARSED:
            try:
                self._body = json.loads(self.payload) if self.payload else None
            except ValueError:
                self._body = None
        return self._body

    @property
    def data(self) -> Any:
        body = self.body
        return body.get("data") if isinstance(body, dict) else None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.payload[:60]!r}, {self.elapsed_s * 1000:.2f} ms, {self.error!r})"


class HttpClient:
    """One keep-alive connection to ``host:port``; not thread-safe.

    :param host: the server's address.
    :param port: the server's port.
    :param timeout_s: how long one request may wait for its answer.
    """

    def __init__(self, host: str, port: int, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str) -> Reply:
        """``GET path``; resent once on a fresh connection if the kept-alive one was closed."""
        return self.request("GET", path, retry_closed=True)

    def post(self, path: str, doc: Any, headers: dict[str, str] | None = None) -> Reply:
        """``POST path`` with a JSON body; sent once (see :func:`client.session.trade`)."""
        return self.request("POST", path, json.dumps(doc).encode(), headers, retry_closed=False)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, retry_closed: bool = False) -> Reply:
        """Send one request and read the whole answer.

        :param retry_closed: resend once when the kept-alive connection was
            found closed before any answer (safe only for idempotent requests).
        """
        if body is None:
            hdrs = headers or _NO_HEADERS  # a GET needs no Content-Type: fewer bytes, less client CPU
        else:
            hdrs = {**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
        attempts = 2 if retry_closed else 1
        start = time.perf_counter()
        for attempt in range(attempts):
            fresh = self._conn is None
            if fresh:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            start = time.perf_counter()
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server had closed: try once more.
                if attempt + 1 < attempts and not fresh and not isinstance(exc, socket.timeout):
                    self.reconnects += 1
                    continue
                return Reply(NO_ANSWER, b"", time.perf_counter() - start, f"{type(exc).__name__}: {exc}",
                             unreachable=isinstance(exc, UNREACHABLE))
            elapsed = time.perf_counter() - start
            if resp.will_close:
                self.close()
            return _parse(resp.status, payload, elapsed)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _parse(status: int, payload: bytes, elapsed: float) -> Reply:
    if status == 200:
        return Reply(status, payload, elapsed)
    reply = Reply(status, payload, elapsed)
    body = reply.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        reply.error = str(body["error"].get("message", ""))
    elif body is None and payload:
        reply.error = f"answer is not JSON: {payload[:80]!r}"
    return reply
