"""The deployment files in deploy/, read without running anything: every
systemd unit parses and says what each node needs (restart on failure, the
bazaar user, the hardening options), its ExecStart runs a real node module
on the installed config, and the three-host config.toml loads.

What runs them lives in tests/integration/test_deploy.py (systemd-analyze,
and a whole cluster started from the units' command lines)."""

from __future__ import annotations

import importlib.util

import pytest

from common import config as configuration
from harness.process import ROOT
from tests.systemd import CONFIG, DATA, DEPLOY, PYTHON, TARGET, UNITS, command, module_of, parse

NODE_UNITS = {
    "bazaar-broker.service": "broker",
    "bazaar-catalog.service": "catalog",
    "bazaar-order@.service": "order",
    "bazaar-frontend@.service": "frontend",
    "bazaar-monitor-exporter.service": "broker.monitor",
}
HARDENING = {
    "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "yes", "UMask": "0077",
}
STATEFUL = {"bazaar-catalog.service", "bazaar-order@.service"}


def test_there_is_a_unit_per_node_kind():
    assert sorted(u.name for u in UNITS) == sorted(NODE_UNITS)


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_every_unit_parses_and_restarts_on_failure(path):
    unit = parse(path)
    assert set(unit.sections) == {"Unit", "Service", "Install"}
    assert unit.value("Unit", "Description")
    assert unit.value("Unit", "PartOf") == "bazaar.target"
    assert unit.value("Install", "WantedBy") == "bazaar.target"
    assert unit.value("Service", "Restart") == "on-failure"
    assert unit.value("Service", "RestartPreventExitStatus") == "2"  # a configuration error (common.node.run_main)
    assert (unit.value("Service", "User"), unit.value("Service", "Group")) == ("bazaar", "bazaar")
    for key, value in HARDENING.items():
        assert unit.value("Service", key) == value, key
    assert unit.values("Service", "SystemCallFilter") == ["@system-service", "~@privileged"]
    if path.name in STATEFUL:
        assert unit.value("Service", "StateDirectory") == "bazaar"
    else:
        assert unit.value("Service", "StateDirectory") is None  # nothing durable


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_exec_start_runs_a_node_module_on_the_installed_config(path):
    unit = parse(path)
    argv = command(unit, "1")
    assert argv[:2] == [PYTHON, "-m"]
    module = module_of(unit)
    assert module == NODE_UNITS[path.name]
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} cannot run with python -m"
    assert argv[argv.index("--config") + 1] == CONFIG
    if path.name in STATEFUL:
        assert argv[argv.index("--data-dir") + 1] == DATA


def test_templates_take_the_replica_id_and_the_frontend_name():
    order = parse(DEPLOY / "systemd" / "bazaar-order@.service")
    assert command(order, "2")[-4:] == ["--id", "2", "--data-dir", DATA]
    frontend = parse(DEPLOY / "systemd" / "bazaar-frontend@.service")
    argv = command(frontend, "frontend-2")
    assert argv[argv.index("--name") + 1] == "frontend-2"
    exporter = parse(DEPLOY / "systemd" / "bazaar-monitor-exporter.service")
    assert command(exporter)[-2:] == ["--prometheus", "127.0.0.1:9105"]
    assert exporter.values("Service", "EnvironmentFile") == ["-/etc/bazaar/exporter.env"]


def test_the_target_groups_the_nodes():
    target = parse(TARGET)
    assert target.value("Install", "WantedBy") == "multi-user.target"


def test_the_three_host_config_loads_and_names_every_replica_the_units_start():
    config = configuration.load(DEPLOY / "config.toml")
    assert [r.id for r in config.orders] == [1, 2, 3]
    hosts = {r.endpoint.connect.split("//")[1].split(":")[0] for r in config.orders}
    assert len(hosts) == 3  # one replica per host: losing a host keeps a majority
    for endpoint in (config.broker.xsub, config.broker.xpub, config.catalog.endpoint,
                     *(r.endpoint for r in config.orders)):
        assert endpoint.bind.startswith("tcp://0.0.0.0:") and not endpoint.connect.startswith("tcp://0.0.0.0")
    assert config.frontend.host == "0.0.0.0"
    # The CSV path is where the units' checkout puts it.
    assert str(config.stocks_csv).startswith("/opt/bazaar/")
    assert (ROOT / config.stocks_csv.relative_to("/opt/bazaar")).exists()


def test_the_parser_refuses_what_systemd_would_not_read(tmp_path):
    bad = tmp_path / "bad.service"
    bad.write_text("[Unit]\nDescription=x\nthis is not a key\n")
    with pytest.raises(ValueError, match="bad.service:3"):
        parse(bad)
    continued = tmp_path / "ok.service"
    continued.write_text("[Service]\nExecStart=/bin/python -m broker \\\n  --config /etc/bazaar/config.toml\n")
    assert command(parse(continued)) == ["/bin/python", "-m", "broker", "--config", CONFIG]
