"""The frontend's HTTP server: gevent's own WSGI server, in one process.

Chosen by measurement (docs/PERFORMANCE.md, ``python -m bench.wsgi``): on
the bare Flask route, ``gevent.pywsgi`` costs about three quarters of
gunicorn's gevent worker's CPU per request and serves more requests a
second, and the frontend's code (greenlets waiting on ZeroMQ through
gevent, :mod:`frontend.channel`) runs on it unchanged. One process, as
before: the lookup cache, the bus subscription and read-your-writes all live
in it; run more frontends behind a load balancer for more throughput.

What the server adds to ``WSGIServer``:

* ``TCP_NODELAY`` on every connection (pywsgi writes the headers and the
  body separately: with Nagle's algorithm and delayed ACKs, 40 ms a request);
* an idle keep-alive connection is closed after :data:`KEEPALIVE_S`, and at
  most ``[frontend] connections`` are served at once;
* a request the server refuses before Flask sees it (a malformed request
  line or header, a request line over :data:`MAX_REQUEST_LINE` bytes, more
  than :data:`MAX_HEADERS` headers) gets the API's error shape
  ``{"error": {"code": ..., "message": ...}}``, not a bare status line;
* a connection whose chunked body broke off is closed after its answer
  (pywsgi would read what follows as the next request, and answer it too);
* what the application left unread of a body is read and dropped after the
  answer (so the connection can serve the next request) within
  :data:`DISCARD_MAX_BYTES` and :data:`DISCARD_MAX_S`; past either, the
  connection closes instead (pywsgi alone would read a body of any length);
* :meth:`FrontendServer.stop` (SIGTERM, Ctrl-C) stops accepting, closes the
  connections that wait idle for their next request, lets every request in
  flight finish and be answered (up to :data:`STOP_S`, each answer saying
  ``Connection: close``), then closes.
"""

from __future__ import annotations

import json
import socket
from http import client as http_client

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.pywsgi import Input, WSGIHandler, WSGIServer

from common.errors import ConfigError
from common.logs import get_logger

log = get_logger(__name__)

KEEPALIVE_S = 75.0
STOP_S = 5.0
# As gunicorn's defaults, which the frontend ran on before.
MAX_REQUEST_LINE = 4094
MAX_HEADERS = 100
MAX_HEADER_LINE = 8190

# An unread rest of a body is dropped within these bounds, else the connection closes.
DISCARD_MAX_BYTES = 64 * 1024 * 1024
DISCARD_MAX_S = 10.0
DISCARD_CHUNK_BYTES = 256 * 1024

_REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


def error_response(status: int, message: str) -> bytes:
    """A whole HTTP response in the API's error shape; the connection closes after it."""
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class _Refused(ValueError):
    """A request the server answers itself, with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _BoundedInput(Input):
    """A request body whose unread rest is dropped within bounds
    (``gave_up`` says the bounds were reached and the rest is still unread)."""

    __slots__ = ("gave_up",)

    def __init__(self, rfile, content_length, socket=None, chunked_input=False) -> None:
        super().__init__(rfile, content_length, socket=socket, chunked_input=chunked_input)
        self.gave_up = False

    def _discard(self) -> None:
        if self._chunked_input_error or not (self.position < (self.content_length or 0) or self.chunked_input):
            return  # a broken chunked body (the handler closes the connection), or nothing left
        self.send_100_continue_enabled = False  # the client did not send it: do not invite it now
        left = DISCARD_MAX_BYTES
        timer = gevent.Timeout(DISCARD_MAX_S)
        timer.start()
        try:
            while left > 0:
                chunk = self.read(min(DISCARD_CHUNK_BYTES, left))
                if not chunk:
                    return
                left -= len(chunk)
            self.gave_up = True
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.gave_up = True
        finally:
            timer.close()


class Handler(WSGIHandler):
    """One connection: pywsgi's handler, with the limits and answers above."""

    def read_requestline(self):
        self.server.idle.add(self)  # waiting for the next request: a stop may close it now
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        finally:
            self.server.idle.discard(self)
        return line.decode("latin-1")

    def handle_one_request(self):
        if self.server.stopping and getattr(self, "served", False):
            return None  # a stop began: no new request on this connection
        result = super().handle_one_request()
        self.served = True
        if isinstance(result, tuple) and b'"error"' not in result[1]:  # pywsgi's own refusal: our shape
            status = int(result[0])
            message = {414: f"request line longer than {MAX_REQUEST_LINE} bytes"}.get(status, "malformed request")
            return result[0], error_response(status, message)
        if result is True and self.server.stopping:
            return None  # answered; the connection closes
        return result

    def get_environ(self):
        environ = super().get_environ()
        plain = self.wsgi_input
        if environ.get("wsgi.input") is plain:
            self.wsgi_input = environ["wsgi.input"] = _BoundedInput(
                plain.rfile, plain.content_length, socket=plain.socket, chunked_input=plain.chunked_input)
        return environ

    def start_response(self, status, headers, exc_info=None):
        if self.server.stopping and not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]  # the last answer on this connection: say so
        return super().start_response(status, headers, exc_info)

    def handle_one_response(self):
        super().handle_one_response()
        body = self.wsgi_input
        if getattr(body, "_chunked_input_error", False) or getattr(body, "gave_up", False):
            # A broken chunked body (where the next request would begin is unknown), or a
            # rest too long to drop: no next request is read, the connection closes.
            self.close_connection = True

    def read_request(self, raw_requestline):
        if len(raw_requestline) > MAX_REQUEST_LINE:
            raise _Refused(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        try:
            ok = super().read_request(raw_requestline)
        except http_client.HTTPException as exc:  # more than 100 headers, and the like
            raise _Refused(431, f"request headers refused: {exc}") from None
        if len(self.headers) > MAX_HEADERS:
            raise _Refused(431, f"more than {MAX_HEADERS} request headers")
        for key, value in self.headers.items():
            if len(key) + len(value) + 2 > MAX_HEADER_LINE:
                raise _Refused(431, f"request header {key[:40]!r} longer than {MAX_HEADER_LINE} bytes")
        return ok

    def _handle_client_error(self, ex):
        status = ex.status if isinstance(ex, _Refused) else 400
        message = str(ex) if isinstance(ex, _Refused) else "malformed request"
        log.info("refused a malformed request", client=self.client_address[0] if self.client_address else None,
                 status=status, problem=str(ex)[:200])
        return str(status), error_response(status, message)


class FrontendServer(WSGIServer):
    """``app`` on ``host:port``, serving at most ``connections`` connections at once."""

    handler_class = Handler

    def __init__(self, host: str, port: int, app, connections: int) -> None:
        super().__init__((host, port), app, spawn=Pool(connections), log=None, error_log=_ErrorLog())
        self.idle: set[Handler] = set()
        self.stopping = False

    def handle(self, client_socket, address):
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_socket.settimeout(KEEPALIVE_S)
        return super().handle(client_socket, address)

    def graceful_stop(self, timeout: float = STOP_S) -> None:
        """Stop accepting; answer what is in flight, close the rest."""
        self.stopping = True
        self.stop_accepting()
        for handler in list(self.idle):  # nothing in flight there: close it, its loop ends
            try:
                handler.socket.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        self.stop(timeout=timeout)


class _ErrorLog:
    """pywsgi's ``error_log``: one structured line per message."""

    def write(self, text: str) -> None:
        text = text.strip()
        if text:
            log.warning("http server", detail=text[:500])

    def flush(self) -> None:
        pass


def serve(server: FrontendServer, on_stop) -> None:
    """Run ``server`` until SIGTERM or SIGINT, then stop it gracefully and call ``on_stop``."""
    import signal

    done = gevent.event.Event()
    begun: list[bool] = []

    def stop(*_args) -> None:
        if not begun:  # a second signal changes nothing
            begun.append(True)
            log.info("stopping: answering the requests in flight", timeout_s=STOP_S)
            gevent.spawn(_stop_and_set, server, done)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    try:
        server.start()
    except OSError as exc:
        on_stop()
        raise ConfigError(f"the frontend cannot listen on {server.server_host}:{server.server_port}: "
                          f"{exc.strerror or exc} (another frontend there? set [frontend] port or --port)") from None
    log.info("frontend serving", address=f"{server.server_host}:{server.server_port}")
    done.wait()
    on_stop()


def _stop_and_set(server: FrontendServer, done) -> None:
    try:
        server.graceful_stop()
    finally:
        done.set()
