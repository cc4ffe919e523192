"""Structured logs that name the node.

Only a node's ``__main__`` calls :func:`configure`. Everywhere else code asks
:func:`get_logger` for a logger and passes facts as keywords::

    log = get_logger(__name__)
    log.info("became leader", term=4, last_index=120)

which prints one line in logfmt (the default, easy to read and to grep)::

    ts=2026-11-25T10:00:00.123Z node=order-3 level=info logger=order.raft msg="became leader" term=4 last_index=120

or, with ``--log-format json`` (``BAZAAR_LOG_FORMAT=json``), one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


class StructLogger:
    """A thin wrapper that turns keyword arguments into log fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info=True)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"node={self.node}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_logfmt_value(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": _timestamp(record),
            "node": self.node,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(node: str, level: str = "info", fmt: str | None = None) -> None:
    """Send every log record of this process to stderr, naming ``node``.

    :param fmt: ``"logfmt"`` or ``"json"``; defaults to ``$BAZAAR_LOG_FORMAT``
        or logfmt.
    """
    fmt = fmt or os.environ.get("BAZAAR_LOG_FORMAT", "logfmt")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node) if fmt == "json" else LogfmtFormatter(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
