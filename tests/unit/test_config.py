"""config.toml: the repository's file loads, ``--set`` overrides apply, and every
invalid value stops the node with a :class:`ConfigError` that names the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from common import config as configuration
from common.config import load
from common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """\
[cluster]
data_dir = "data"
log_level = "info"
stocks_csv = "stocks.csv"

[heartbeat]
interval_ms = 100
liveness = 3

[timeouts]
request_ms = 1000
lookup_attempts = 2
trade_deadline_ms = 4000

[broker]
xsub = "tcp://127.0.0.1:5555"
xpub = "tcp://127.0.0.1:5556"

[catalog]
endpoint = "tcp://127.0.0.1:5560"

[[order]]
id = 1
endpoint = "tcp://127.0.0.1:5561"

[[order]]
id = 2
endpoint = "tcp://127.0.0.1:5562"

[frontend]
host = "127.0.0.1"
port = 8000
cache = true
cache_size = 10
max_body_bytes = 16384
connections = 1000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is not in the base config"
    return text.replace(old, new, 1)


# --- the repository's config.toml ------------------------------------------------


def test_the_repository_config_loads():
    config = load(REPO / "config.toml")
    assert config.path == (REPO / "config.toml").resolve()
    assert config.log_level == "info"
    assert config.data_dir == (REPO / "data").resolve()
    assert (config.heartbeat.interval_ms, config.heartbeat.liveness) == (100, 3)
    assert config.heartbeat.interval_s == pytest.approx(0.1)
    assert config.heartbeat.window_s == pytest.approx(0.3)
    assert config.timeouts.trade_deadline_ms > config.timeouts.request_ms
    assert config.broker.xsub.connect == config.broker.xsub.bind == "tcp://127.0.0.1:5555"
    assert config.broker.xpub.connect == "tcp://127.0.0.1:5556"
    assert config.catalog.endpoint.connect == "tcp://127.0.0.1:5560"
    assert config.stocks_csv == (REPO / "catalog" / "stocks.csv").resolve()
    assert config.stocks_csv.exists()
    assert [r.id for r in config.orders] == [1, 2, 3]
    assert [r.name for r in config.orders] == ["order-1", "order-2", "order-3"]
    assert config.replica(2).endpoint.connect == "tcp://127.0.0.1:5562"
    assert config.frontend.cache is True and config.frontend.cache_size == 10
    assert config.node_names() == ["broker", "catalog", "order-1", "order-2", "order-3", "frontend"]
    assert config.security.curve is True and config.security.keys_dir == (REPO / "keys").resolve()


def test_endpoints_are_distinct_in_the_repository_config():
    config = load(REPO / "config.toml")
    endpoints = [config.broker.xsub.bind, config.broker.xpub.bind, config.catalog.endpoint.bind,
                 *(r.endpoint.bind for r in config.orders)]
    assert len(set(endpoints)) == len(endpoints)


def test_unknown_replica_id_names_the_ids_there_are():
    config = load(REPO / "config.toml")
    with pytest.raises(ConfigError, match=r"id = 9.*ids: 1, 2, 3"):
        config.replica(9)


# --- a minimal file: defaults, relative paths, bind ----------------------------------


def test_relative_paths_are_relative_to_the_file(tmp_path):
    config = load(write(tmp_path, BASE))
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.stocks_csv == (tmp_path / "stocks.csv").resolve()


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    text = "\n".join(line for line in BASE.splitlines()
                     if not line.startswith(("data_dir", "log_level", "interval_ms", "liveness", "request_ms",
                                             "lookup_attempts", "trade_deadline_ms", "host",
                                             "port", "cache", "max_body_bytes", "connections")))
    config = load(write(tmp_path, text))
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.log_level == "info"
    assert (config.heartbeat.interval_ms, config.heartbeat.liveness) == (100, 3)
    assert (config.timeouts.request_ms, config.timeouts.lookup_attempts,
            config.timeouts.trade_deadline_ms) == (1000, 2, 4000)
    fe = config.frontend
    assert (fe.host, fe.port, fe.cache, fe.cache_size, fe.max_body_bytes, fe.connections) == \
        ("127.0.0.1", 8000, True, 10, 16384, 1000)


def test_curve_is_on_by_default_with_the_keys_next_to_the_file(tmp_path):
    config = load(write(tmp_path, BASE))
    assert config.security.curve is True
    assert config.security.keys_dir == (tmp_path / "keys").resolve()
    config = load(write(tmp_path, BASE + '[security]\ncurve = false\nkeys_dir = "/etc/bazaar/keys"\n'))
    assert config.security.curve is False and config.security.keys_dir == Path("/etc/bazaar/keys")
    assert load(write(tmp_path, BASE), ["security.curve=false"]).security.curve is False


def test_bind_may_differ_from_the_connect_address(tmp_path):
    text = replace(BASE, 'endpoint = "tcp://127.0.0.1:5560"',
                   'endpoint = "tcp://catalog.example:5560"\nbind = "tcp://0.0.0.0:5560"')
    text = replace(text, 'xsub = "tcp://127.0.0.1:5555"',
                   'xsub = "tcp://broker.example:5555"\nxsub_bind = "tcp://*:5555"')
    config = load(write(tmp_path, text))
    assert config.catalog.endpoint.connect == "tcp://catalog.example:5560"
    assert config.catalog.endpoint.bind == "tcp://0.0.0.0:5560"
    assert config.broker.xsub.connect == "tcp://broker.example:5555"
    assert config.broker.xsub.bind == "tcp://*:5555"
    assert config.broker.xpub.bind == config.broker.xpub.connect


def test_replicas_are_sorted_by_id(tmp_path):
    text = replace(BASE, "id = 1\n", "id = 7\n")
    config = load(write(tmp_path, text))
    assert [r.id for r in config.orders] == [2, 7]


def test_config_is_frozen(tmp_path):
    config = load(write(tmp_path, BASE))
    with pytest.raises(AttributeError):
        config.log_level = "debug"  # type: ignore[misc]


# --- overrides (--set section.key=value) ---------------------------------------------


def test_overrides_are_read_as_toml(tmp_path):
    config = load(write(tmp_path, BASE), [
        "heartbeat.interval_ms=50", "frontend.cache=false", 'cluster.log_level="debug"',
        "timeouts.request_ms = 200",
    ])
    assert config.heartbeat.interval_ms == 50
    assert config.frontend.cache is False
    assert config.log_level == "debug"
    assert config.timeouts.request_ms == 200


def test_an_override_that_is_not_toml_is_taken_as_a_string(tmp_path):
    config = load(write(tmp_path, BASE), ["cluster.log_level=warning", "frontend.host=0.0.0.0",
                                          f"cluster.data_dir={tmp_path / 'elsewhere'}"])
    assert config.log_level == "warning"
    assert config.frontend.host == "0.0.0.0"
    assert config.data_dir == (tmp_path / "elsewhere").resolve()


def test_overrides_apply_in_order_and_may_add_keys_and_sections(tmp_path):
    text = replace(BASE, "[heartbeat]\ninterval_ms = 100\nliveness = 3\n", "")
    config = load(write(tmp_path, text), ["heartbeat.liveness=5", "heartbeat.liveness=4",
                                          'catalog.bind="tcp://0.0.0.0:5560"'])
    assert config.heartbeat.liveness == 4
    assert config.catalog.endpoint.bind == "tcp://0.0.0.0:5560"


def test_an_override_that_breaks_a_rule_is_refused_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match="interval_ms"):
        load(write(tmp_path, BASE), ["heartbeat.interval_ms=abc"])
    with pytest.raises(ConfigError, match="interval_ms"):
        load(write(tmp_path, BASE), ["heartbeat.interval_ms=5"])


@pytest.mark.parametrize("item", [
    "heartbeat.interval_ms",        # no "="
    "interval_ms=50",               # no section
    "a.b.c=1",                      # too deep
    ".interval_ms=1",
    "heartbeat.=1",
    "=1",
])
def test_malformed_overrides(tmp_path, item):
    with pytest.raises(ConfigError, match="section.key=value"):
        load(write(tmp_path, BASE), [item])


def test_an_override_into_an_array_of_tables_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[order\] is not a table"):
        load(write(tmp_path, BASE), ["order.id=3"])


def test_command_line_options(tmp_path):
    parser = argparse.ArgumentParser()
    configuration.add_arguments(parser)
    args = parser.parse_args(["--config", str(write(tmp_path, BASE)), "--data-dir", str(tmp_path / "d"),
                              "--log-level", "error", "--set", "heartbeat.liveness=6",
                              "--set", "frontend.port=9000"])
    config = configuration.from_args(args, ["frontend.cache_size=3"])
    assert config.data_dir == (tmp_path / "d").resolve()
    assert config.log_level == "error"
    assert config.heartbeat.liveness == 6
    assert config.frontend.port == 9000
    assert config.frontend.cache_size == 3


# --- every invalid value is a ConfigError naming the key --------------------------------

# (old text, new text, words the error must contain)
INVALID = [
    ('log_level = "info"', 'log_level = "verbose"', "log_level"),
    ('log_level = "info"', "log_level = 1", "log_level"),
    ('data_dir = "data"', "data_dir = 5", "data_dir"),
    ("interval_ms = 100", "interval_ms = 9", "interval_ms"),
    ("interval_ms = 100", "interval_ms = 100.0", "interval_ms"),
    ("interval_ms = 100", 'interval_ms = "100"', "interval_ms"),
    ("interval_ms = 100", "interval_ms = true", "interval_ms"),
    ("liveness = 3", "liveness = 1", "liveness"),
    ("request_ms = 1000", "request_ms = 0", "request_ms"),
    ("lookup_attempts = 2", "lookup_attempts = 0", "lookup_attempts"),
    ("trade_deadline_ms = 4000", "trade_deadline_ms = 1000", "trade_deadline_ms"),
    ("trade_deadline_ms = 4000", "trade_deadline_ms = 4000.5", "trade_deadline_ms"),
    ("trade_deadline_ms = 4000", "trade_deadline_ms = 4000\ncatalog_ms = 500",
     "[timeouts] catalog_ms: no trade waits on the catalog any more: remove the key"),
    ('endpoint = "tcp://127.0.0.1:5560"', 'endpoint = "tcp://127.0.0.1:5560"\nstocks_csv = "stocks.csv"',
     "[catalog] stocks_csv: the initial stocks are the order log's first entry now: move the key to [cluster]"),
    ('xsub = "tcp://127.0.0.1:5555"', "", "broker.xsub"),
    ('xpub = "tcp://127.0.0.1:5556"', 'xpub = "http://127.0.0.1:5556"', "broker.xpub"),
    ('xpub = "tcp://127.0.0.1:5556"', "xpub = 5556", "broker.xpub"),
    ('endpoint = "tcp://127.0.0.1:5560"', "", "[catalog] endpoint"),
    ('endpoint = "tcp://127.0.0.1:5560"', 'endpoint = "127.0.0.1:5560"', "[catalog] endpoint"),
    ('endpoint = "tcp://127.0.0.1:5560"', 'endpoint = "tcp://127.0.0.1:5560"\nbind = 5560', "bind"),
    ('stocks_csv = "stocks.csv"', "", "stocks_csv"),
    ('stocks_csv = "stocks.csv"', "stocks_csv = []", "stocks_csv"),
    ("id = 1\n", "id = 0\n", "[order] id"),
    ("id = 1\n", "id = 2\n", "ids must be unique"),
    ("id = 1\n", 'id = "1"\n', "[order] id"),
    ("id = 1\n", "", "[order] id"),
    ('endpoint = "tcp://127.0.0.1:5561"', 'endpoint = "udp://127.0.0.1:5561"', "order id=1"),
    ('host = "127.0.0.1"', "host = 127", "host"),
    ("port = 8000", "port = 65536", "port"),
    ("port = 8000", "port = -1", "port"),
    ("cache = true", 'cache = "yes"', "cache"),
    ("cache = true", "cache = 1", "cache"),
    ("cache_size = 10", "cache_size = 0", "cache_size"),
    ("max_body_bytes = 16384", "max_body_bytes = 63", "max_body_bytes"),
    ("connections = 1000", "connections = 0", "connections"),
    ("[frontend]", '[security]\ncurve = "off"\n[frontend]', "[security] curve must be true or false"),
    ("[frontend]", "[security]\nkeys_dir = 1\n[frontend]", "[security] keys_dir must be a string"),
    ("[cluster]\n", "cluster = 5\n[other]\n", "[cluster] must be a table"),
    ("[heartbeat]\n", "[other]\n", "[heartbeat] must be a table"),  # with heartbeat = [1] at the top
]


@pytest.mark.parametrize("old,new,words", INVALID, ids=[f"{n.strip() or 'no ' + o.split()[0]}" for o, n, _ in INVALID])
def test_invalid_value_names_the_key(tmp_path, old, new, words):
    text = replace(BASE, old, new)
    if old == "[heartbeat]\n":
        text = "heartbeat = [1]\n" + text
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert words in str(info.value)


@pytest.mark.parametrize("old,new,words", [
    ("interval_ms = 100", "intervl_ms = 100", "unknown key 'intervl_ms' in [heartbeat]; did you mean 'interval_ms'?"),
    ("[frontend]", "[frontent]", "unknown section [frontent]; did you mean [frontend]?"),
    ("[frontend]", "[security]\ncurv = false\n[frontend]", "unknown key 'curv' in [security]; did you mean 'curve'?"),
])
def test_a_typo_is_refused_with_a_suggestion(tmp_path, old, new, words):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, replace(BASE, old, new)))
    assert words in str(info.value)


def test_a_typo_in_an_override_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="hearbeat"):
        load(write(tmp_path, BASE), ["hearbeat.interval_ms=50"])


def test_no_replicas(tmp_path):
    text = BASE.split("[[order]]")[0] + "[frontend]" + BASE.split("[frontend]")[1]
    with pytest.raises(ConfigError, match=r"\[\[order\]\]"):
        load(write(tmp_path, text))


def test_order_as_a_single_table_is_refused(tmp_path):
    text = replace(BASE, "[[order]]\nid = 1", "[order]\nid = 1")
    text = replace(text, '[[order]]\nid = 2\nendpoint = "tcp://127.0.0.1:5562"\n', "")
    with pytest.raises(ConfigError, match=r"\[\[order\]\]"):
        load(write(tmp_path, text))


def test_order_items_that_are_not_tables_are_refused(tmp_path):
    text = "order = [1, 2]\n" + BASE.split("[[order]]")[0] + "[frontend]" + BASE.split("[frontend]")[1]
    with pytest.raises(ConfigError, match=r"\[\[order\]\] must be a table"):
        load(write(tmp_path, text))


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_a_file_that_is_not_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, BASE + "\n[broken\n"))
