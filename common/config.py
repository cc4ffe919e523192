"""Loading and validating ``config.toml``.

Every node calls :func:`load` once at startup, after applying command-line
overrides; a bad file stops the node with a :class:`ConfigError` that names the
key. The returned :class:`Config` is frozen and passed explicitly to whatever
needs it; there is no global configuration object.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
# The initial stocks travel in one log entry, in one message of at most 4 MiB (about 50 bytes a stock).
MAX_STOCKS = 20_000
ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")

# Keys an earlier Bazaar read, and what to do about each now.
MOVED_KEYS = {
    ("catalog", "stocks_csv"): "the initial stocks are the order log's first entry now: move the key to "
                               "[cluster] stocks_csv (the first order leader of a new cluster reads it)",
    ("timeouts", "catalog_ms"): "no trade waits on the catalog any more: remove the key",
}

# Every key config.toml may hold; anything else is a typo and is refused.
KNOWN_KEYS = {
    "cluster": {"id", "data_dir", "log_level", "stocks_csv"},
    "heartbeat": {"interval_ms", "liveness"},
    "timeouts": {"request_ms", "lookup_attempts", "trade_deadline_ms"},
    "broker": {"xsub", "xpub", "xsub_bind", "xpub_bind"},
    "catalog": {"endpoint", "bind"},
    "order": {"id", "endpoint", "bind"},
    "frontend": {"host", "port", "cache", "cache_size", "max_body_bytes", "connections"},
    "security": {"curve", "keys_dir"},
}


@dataclass(frozen=True)
class Endpoint:
    """Where a node listens (``bind``) and where others reach it (``connect``)."""

    connect: str
    bind: str


@dataclass(frozen=True)
class HeartbeatConfig:
    """``interval_ms`` between beats; ``liveness`` beats missed means dead.
    The interval must be at least 10 ms and liveness at least 2."""

    interval_ms: int
    liveness: int

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000

    @property
    def window_s(self) -> float:
        """How long a node may stay silent before it is taken as dead."""
        return self.interval_ms * self.liveness / 1000


@dataclass(frozen=True)
class Timeouts:
    """Request deadlines. ``trade_deadline_ms`` must exceed ``request_ms``."""

    request_ms: int
    lookup_attempts: int
    trade_deadline_ms: int


@dataclass(frozen=True)
class BrokerConfig:
    xsub: Endpoint
    xpub: Endpoint


@dataclass(frozen=True)
class CatalogConfig:
    endpoint: Endpoint


@dataclass(frozen=True)
class ReplicaConfig:
    id: int
    endpoint: Endpoint

    @property
    def name(self) -> str:
        return f"order-{self.id}"


@dataclass(frozen=True)
class FrontendConfig:
    host: str
    port: int
    cache: bool
    cache_size: int
    max_body_bytes: int
    connections: int


@dataclass(frozen=True)
class SecurityConfig:
    """CurveZMQ on every socket between nodes (``curve``, on by default; off
    only for debugging, and every node says so loudly when it starts), with
    the key pairs under ``keys_dir`` (``./run.sh keys`` makes them; see
    :mod:`common.security` for the layout)."""

    curve: bool
    keys_dir: Path


@dataclass(frozen=True)
class Config:
    """The whole config.toml. ``stocks_csv`` is the initial stock list, read
    by the first order leader of a new cluster into the log's first entry
    (and never again)."""

    path: Path
    cluster_id: str
    data_dir: Path
    log_level: str
    stocks_csv: Path
    heartbeat: HeartbeatConfig
    timeouts: Timeouts
    broker: BrokerConfig
    catalog: CatalogConfig
    orders: tuple[ReplicaConfig, ...]
    frontend: FrontendConfig
    security: SecurityConfig

    def replica(self, replica_id: int) -> ReplicaConfig:
        """The replica with this id.

        :raises ConfigError: if config.toml has no such ``[[order]]``.
        """
        for r in self.orders:
            if r.id == replica_id:
                return r
        ids = ", ".join(str(r.id) for r in self.orders)
        raise ConfigError(f"no [[order]] with id = {replica_id} in {self.path} (ids: {ids})")

    def node_names(self) -> list[str]:
        """Every node of the cluster, in the order run.sh starts them."""
        return ["broker", "catalog", *(r.name for r in self.orders), "frontend"]


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a config file.

    :param overrides: ``section.key=value`` strings; the value is read as TOML
        (so ``true``, ``50`` and ``"text"`` work) or else taken as a string.
    :raises ConfigError: on a missing file, bad TOML, or an invalid value.
    """
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for item in overrides:
        _apply_override(raw, item)
    return _build(raw, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every node shares."""
    parser.add_argument("--config", default="config.toml", help="path of config.toml (default: %(default)s)")
    parser.add_argument("--data-dir", help="override cluster.data_dir")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="override cluster.log_level")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override any config key, e.g. --set heartbeat.interval_ms=50 (repeatable)",
    )


def from_args(args: argparse.Namespace, extra: list[str] | None = None) -> Config:
    """Load the config named by :func:`add_arguments`'s options.

    :param extra: further overrides a node derives from its own flags.
    """
    overrides = list(args.set)
    if args.data_dir:
        overrides.append(f"cluster.data_dir={json.dumps(str(Path(args.data_dir).resolve()))}")
    if args.log_level:
        overrides.append(f"cluster.log_level={json.dumps(args.log_level)}")
    return load(args.config, overrides + (extra or []))


# --- internals ------------------------------------------------------------


def _apply_override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"override {item!r}: [{parts[0]}] is not a table")
    section[parts[1]] = value


def _get(table: dict, section: str, key: str, kind: type, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"[{section}] {key} is required")
    if kind is int and (type(value) is not int):
        raise ConfigError(f"[{section}] {key} must be an integer, got {value!r}")
    if kind is bool and type(value) is not bool:
        raise ConfigError(f"[{section}] {key} must be true or false, got {value!r}")
    if kind is str and type(value) is not str:
        raise ConfigError(f"[{section}] {key} must be a string, got {value!r}")
    return value


def _positive(section: str, key: str, value: int, minimum: int = 1) -> int:
    if value < minimum:
        raise ConfigError(f"[{section}] {key} must be at least {minimum}, got {value}")
    return value


def _endpoint(table: dict, section: str) -> Endpoint:
    connect = _get(table, section, "endpoint", str)
    bind = table.get("bind", connect)
    if type(bind) is not str:
        raise ConfigError(f"[{section}] bind must be a string")
    for key, value in (("endpoint", connect), ("bind", bind)):
        if not value.startswith(ENDPOINT_SCHEMES):
            raise ConfigError(f"[{section}] {key} must start with tcp://, ipc:// or inproc://, got {value!r}")
    return Endpoint(connect=connect, bind=bind)


def _check_moved(raw: dict) -> None:
    """Refuse the keys an earlier Bazaar read, saying what to do instead
    (before anything else: the old file lacks what replaced them)."""
    for (section, key), what in MOVED_KEYS.items():
        table = raw.get(section)
        if isinstance(table, dict) and key in table:
            raise ConfigError(f"[{section}] {key}: {what}")


def _check_keys(raw: dict) -> None:
    """Refuse sections and keys config.toml does not know (most likely typos)."""
    for section, value in raw.items():
        if section not in KNOWN_KEYS:
            hint = difflib.get_close_matches(section, KNOWN_KEYS, n=1)
            raise ConfigError(f"unknown section [{section}]" + (f"; did you mean [{hint[0]}]?" if hint else ""))
        tables = value if section == "order" and isinstance(value, list) else [value]
        for table in tables:
            if not isinstance(table, dict):
                continue  # the section's own checks say what is wrong
            for key in table:
                if key not in KNOWN_KEYS[section]:
                    hint = difflib.get_close_matches(key, KNOWN_KEYS[section], n=1)
                    raise ConfigError(f"unknown key {key!r} in [{section}]"
                                      + (f"; did you mean {hint[0]!r}?" if hint else ""))


def _table(raw: dict, name: str) -> dict:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _cluster_id(cluster: dict) -> str:
    value = _get(cluster, "cluster", "id", str, "bazaar")
    if not 0 < len(value) <= 64 or not value.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"[cluster] id must be 1 to 64 letters, digits, '-' or '_', got {value!r}")
    return value


def _build(raw: dict, path: Path) -> Config:
    base = path.parent
    _check_moved(raw)
    cluster = _table(raw, "cluster")
    log_level = _get(cluster, "cluster", "log_level", str, "info")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"[cluster] log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    hb = _table(raw, "heartbeat")
    heartbeat = HeartbeatConfig(
        interval_ms=_positive("heartbeat", "interval_ms", _get(hb, "heartbeat", "interval_ms", int, 100), 10),
        liveness=_positive("heartbeat", "liveness", _get(hb, "heartbeat", "liveness", int, 3), 2),
    )

    to = _table(raw, "timeouts")
    timeouts = Timeouts(
        request_ms=_positive("timeouts", "request_ms", _get(to, "timeouts", "request_ms", int, 1000), 10),
        lookup_attempts=_positive("timeouts", "lookup_attempts", _get(to, "timeouts", "lookup_attempts", int, 2)),
        trade_deadline_ms=_get(to, "timeouts", "trade_deadline_ms", int, 4000),
    )
    if timeouts.trade_deadline_ms <= timeouts.request_ms:
        raise ConfigError("[timeouts] trade_deadline_ms must be larger than request_ms")

    br = _table(raw, "broker")
    broker = BrokerConfig(
        xsub=_endpoint({"endpoint": br.get("xsub"), "bind": br.get("xsub_bind", br.get("xsub"))}, "broker.xsub"),
        xpub=_endpoint({"endpoint": br.get("xpub"), "bind": br.get("xpub_bind", br.get("xpub"))}, "broker.xpub"),
    )

    cat = _table(raw, "catalog")
    catalog = CatalogConfig(endpoint=_endpoint(cat, "catalog"))

    orders_raw = raw.get("order", [])
    if not isinstance(orders_raw, list) or not orders_raw:
        raise ConfigError("at least one [[order]] replica is required")
    orders = []
    for table in orders_raw:
        if not isinstance(table, dict):
            raise ConfigError("each [[order]] must be a table with id and endpoint")
        rid = _positive("order", "id", _get(table, "order", "id", int))
        orders.append(ReplicaConfig(id=rid, endpoint=_endpoint(table, f"order id={rid}")))
    if len({r.id for r in orders}) != len(orders):
        raise ConfigError("[[order]] ids must be unique")

    fe = _table(raw, "frontend")
    frontend = FrontendConfig(
        host=_get(fe, "frontend", "host", str, "127.0.0.1"),
        port=_positive("frontend", "port", _get(fe, "frontend", "port", int, 8000), 0),
        cache=_get(fe, "frontend", "cache", bool, True),
        cache_size=_positive("frontend", "cache_size", _get(fe, "frontend", "cache_size", int, 10)),
        max_body_bytes=_positive("frontend", "max_body_bytes", _get(fe, "frontend", "max_body_bytes", int, 16384), 64),
        connections=_positive("frontend", "connections", _get(fe, "frontend", "connections", int, 1000)),
    )
    if frontend.port > 65535:
        raise ConfigError(f"[frontend] port must be at most 65535, got {frontend.port}")

    sec = _table(raw, "security")
    security = SecurityConfig(
        curve=_get(sec, "security", "curve", bool, True),
        keys_dir=(base / _get(sec, "security", "keys_dir", str, "keys")).resolve(),
    )
    _check_keys(raw)

    return Config(
        path=path,
        cluster_id=_cluster_id(cluster),
        data_dir=(base / _get(cluster, "cluster", "data_dir", str, "data")).resolve(),
        log_level=log_level,
        stocks_csv=(base / _get(cluster, "cluster", "stocks_csv", str)).resolve(),
        heartbeat=heartbeat,
        timeouts=timeouts,
        broker=broker,
        catalog=catalog,
        orders=tuple(sorted(orders, key=lambda r: r.id)),
        frontend=frontend,
        security=security,
    )


def load_stocks(path: Path) -> list[tuple[str, float, int, int]]:
    """The initial stock list: ``(name, price, quantity, volume)`` per row of
    the CSV (header ``name,price,quantity,volume``).

    :raises ConfigError: the file is missing, or a row is malformed.
    """
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise ConfigError(f"[cluster] stocks_csv {path} does not exist") from None
    stocks = []
    for line, row in enumerate(rows, start=2):
        try:
            name = row["name"].strip()
            price, quantity, volume = float(row["price"]), int(row["quantity"]), int(row["volume"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"{path}:{line}: expected name,price,quantity,volume") from None
        if not name or not math.isfinite(price) or price < 0 or quantity < 0 or volume < 0:
            raise ConfigError(f"{path}:{line}: name must be set and numbers must be finite and not negative")
        stocks.append((name, price, quantity, volume))
    if not stocks:
        raise ConfigError(f"{path} lists no stocks")
    if len(stocks) > MAX_STOCKS:
        raise ConfigError(f"{path} lists {len(stocks)} stocks; at most {MAX_STOCKS} fit in the log's first entry")
    names = [row[0] for row in stocks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path} names {', '.join(twice)} more than once")
    return stocks
