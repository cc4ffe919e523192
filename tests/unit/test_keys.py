"""The CURVE key files (common/security.py): what ``./run.sh keys`` makes,
which files a process needs, and the clear error for each missing or unsafe
one. Files only, no sockets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common import security
from common.config import load
from common.errors import ConfigError
from common.sockets import CurveClient, CurveServer

BASE = """\
[cluster]
stocks_csv = "stocks.csv"

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
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path

NAMES = ["broker", "catalog", "order-1", "order-2", "frontend", "monitor", "tools"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path):
    return load(write(tmp_path, BASE))


@pytest.fixture
def keyed(config):
    security.generate(config.security.keys_dir, security.key_names(config))
    return config


def test_every_node_and_tool_has_a_name(config):
    assert security.key_names(config) == NAMES


def test_keys_are_made_with_public_halves_apart_and_secret_halves_owner_only(config):
    keys_dir = config.security.keys_dir
    assert not security.has_keys(keys_dir)
    assert security.generate(keys_dir, security.key_names(config)) == NAMES
    assert security.has_keys(keys_dir)
    assert sorted(p.name for p in (keys_dir / "public_keys").iterdir()) == sorted(f"{n}.key" for n in NAMES)
    assert sorted(p.name for p in (keys_dir / "private_keys").iterdir()) == sorted(f"{n}.key_secret" for n in NAMES)
    assert mode(keys_dir / "private_keys") == 0o700
    for name in NAMES:
        assert mode(security.secret_path(keys_dir, name)) == 0o600
        assert "secret-key" not in security.public_path(keys_dir, name).read_text()


def test_existing_keys_are_kept_and_a_public_key_alone_means_another_host_holds_the_pair(keyed):
    keys_dir = keyed.security.keys_dir
    before = security.public_path(keys_dir, "catalog").read_text()
    security.secret_path(keys_dir, "order-2").unlink()  # this host does not run order-2
    security.secret_path(keys_dir, "monitor").unlink()
    security.public_path(keys_dir, "monitor").unlink()  # nobody has the monitor's: made anew
    assert security.generate(keys_dir, security.key_names(keyed)) == ["monitor"]
    assert security.public_path(keys_dir, "catalog").read_text() == before
    assert not security.secret_path(keys_dir, "order-2").exists()
    assert security.generate(keys_dir, ["catalog"], force=True) == ["catalog"]
    assert security.public_path(keys_dir, "catalog").read_text() != before


def test_a_node_gets_its_pair_and_every_public_key(keyed):
    keys = security.node_keys(keyed, "order-1")
    assert keys.curve and set(keys.known) == set(NAMES)
    client = keys.client("catalog")
    assert isinstance(client, CurveClient) and client.server == keys.known["catalog"]
    assert client.public == keys.public and len(client.secret) == 40
    server = keys.server("router")
    assert isinstance(server, CurveServer) and server.domain == "router" and server.public == keys.public
    assert set(keys.allowed().values()) == set(NAMES)
    assert keys.secret.decode() not in repr(keys) + repr(client) + repr(server)


def test_with_curve_off_nothing_is_loaded_and_sockets_stay_plain(tmp_path, caplog):
    config = load(write(tmp_path, BASE + "[security]\ncurve = false\n"))
    keys = security.node_keys(config, "catalog")  # no key on disk: fine
    assert keys.client("broker") is None and keys.server("router") is None
    assert "CURVE IS OFF" in caplog.text


def test_a_missing_key_pair_says_to_run_the_keys_command(config):
    with pytest.raises(ConfigError, match=r"no key pair for 'catalog'.*Run ./run.sh keys"):
        security.node_keys(config, "catalog")


def test_a_missing_server_key_says_where_it_should_be(keyed):
    security.public_path(keyed.security.keys_dir, "broker").unlink()
    keys = security.node_keys(keyed, "catalog")
    with pytest.raises(ConfigError, match=r"no public key of 'broker'.*public_keys/broker.key"):
        keys.client("broker")


def test_a_secret_key_readable_by_others_is_refused(keyed):
    path = security.secret_path(keyed.security.keys_dir, "catalog")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0644\): chmod 600"):
        security.node_keys(keyed, "catalog")


def test_a_public_key_that_is_not_the_half_of_the_secret_one_is_refused(keyed):
    keys_dir = keyed.security.keys_dir
    security.public_path(keys_dir, "catalog").write_text(security.public_path(keys_dir, "broker").read_text())
    with pytest.raises(ConfigError, match="is not the public half"):
        security.node_keys(keyed, "catalog")


def test_a_damaged_key_file_is_a_config_error(keyed):
    security.secret_path(keyed.security.keys_dir, "catalog").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="catalog"):
        security.node_keys(keyed, "catalog")
