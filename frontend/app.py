"""The frontend's application: :func:`create_app` and the state its handlers share.

``create_app(config)`` builds the Flask application and starts the bus
watcher; ``python -m frontend`` serves it on gevent's WSGI server
(:mod:`frontend.server`; one process, many greenlets: one cache, one bus subscription, and
read-your-writes across every connection). Every ZeroMQ send and receive is
non-blocking and every wait goes through gevent (:mod:`frontend.channel`,
:mod:`frontend.greenwait`), so a greenlet waiting on a backend never blocks
the others.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from flask import Flask, Response, request
from prometheus_client import CollectorRegistry

from common import security
from common.config import Config
from common.protocol import FrontendStatus

from .backend import Backend
from .cache import LookupCache
from .leader import LeaderTracker
from .metrics import UNMATCHED, RequestStats, registry
from .routes import api
from .watch import BusWatcher

# Where a request's start time waits for its end (frontend.metrics).
_STARTED = "bazaar.started"


@dataclass
class FrontendState:
    """Everything the request handlers share, kept in ``app.extensions``."""

    name: str
    ctx: zmq.Context
    curve: bool
    lock: threading.Lock
    cache: LookupCache | None
    tracker: LeaderTracker
    backend: Backend
    watcher: BusWatcher
    requests: RequestStats = field(default_factory=RequestStats)
    metrics: CollectorRegistry | None = None

    def status(self) -> FrontendStatus:
        """The frontend's figures, for its heartbeat and ``GET /stats``."""
        with self.lock:
            return self._status()

    def stats(self) -> dict[str, Any]:
        """``GET /stats``: the :class:`FrontendStatus` as JSON, its ``cache``
        with ``enabled`` (only ``{"enabled": false}`` without a cache) and
        every cached stock's version and quantity under ``cache.entries``."""
        with self.lock:
            status = dataclasses.asdict(self._status())
            if self.cache is None:
                status["cache"] = {"enabled": False}
            else:
                status["cache"] = {"enabled": True, **status["cache"], "entries": {
                    e.name: {"version": e.version, "quantity": e.quantity} for e in self.cache.entries.values()
                }}
            return status

    def _status(self) -> FrontendStatus:
        return FrontendStatus(
            node=self.name,
            cache=None if self.cache is None else self.cache.snapshot(),
            leader=self.tracker.snapshot(),
            backend=self.backend.status(),
            heard=self.watcher.snapshot(time.monotonic()),
            curve=self.curve,
        )

    def close(self) -> None:
        self.watcher.stop()
        self.backend.close()
        self.ctx.destroy(linger=0)


def create_app(config: Config, name: str = "frontend", cache: bool | None = None,
               failpoint: str | None = None) -> Flask:
    """Build the frontend application and start its bus watcher.

    :param name: the node name on the bus (several frontends need several names).
    :param cache: overrides ``[frontend] cache`` when not None.
    :param failpoint: a test hook of :data:`frontend.backend.FAILPOINTS`.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.frontend.max_body_bytes
    # One key pair for every frontend (they differ by name, not by key).
    keys = security.node_keys(config, security.FRONTEND)
    ctx = zmq.Context()
    lock = threading.Lock()
    enabled = config.frontend.cache if cache is None else cache
    lookup_cache = LookupCache(config.frontend.cache_size, config.heartbeat.window_s) if enabled else None
    tracker = LeaderTracker([r.id for r in config.orders])
    state = FrontendState(name, ctx, keys.curve, lock, lookup_cache, tracker, None, None)  # type: ignore[arg-type]
    state.watcher = BusWatcher(config, ctx, name, lookup_cache, tracker, lock, state.status,
                               curve=keys.client("broker"))
    state.backend = Backend(config, ctx, lookup_cache, tracker, lock, failpoint, watch=state.watcher.adopt,
                            keys=keys, catalog_alive=state.watcher.catalog_alive)
    state.metrics = registry(state.requests, state.status)
    app.extensions["bazaar"] = state
    app.register_blueprint(api)
    _count_requests(app, state.requests)
    state.watcher.start()
    return app


def _count_requests(app: Flask, requests: RequestStats) -> None:
    """Count every answered request, and time it, for ``GET /metrics``
    (a few microseconds a request: see :mod:`frontend.metrics`)."""
    clock = time.perf_counter

    @app.before_request
    def started() -> None:
        request.environ[_STARTED] = clock()

    @app.after_request
    def answered(response: Response) -> Response:
        environ = request.environ
        start = environ.get(_STARTED)
        if start is not None:
            rule = request.url_rule
            requests.observe(UNMATCHED if rule is None else rule.rule, environ["REQUEST_METHOD"],
                             response.status_code, clock() - start)
        return response
