"""The systemd units in deploy/systemd, run as far as a machine without
systemd as its init allows.

* Every flag a unit's ExecStart passes is one its module's ``--help`` lists.
* ``systemd-analyze verify`` finds nothing to say about any unit, and
  ``systemd-analyze security --offline`` rates each one's exposure at most
  :data:`MAX_EXPOSURE` (skipped, saying so, where systemd-analyze is absent
  or too old for ``--offline``). The units are verified as copies in which
  the python of the install (/opt/bazaar/.venv) is this one, since verify
  checks that the command exists.
* The units' command lines, with the install's paths mapped onto a test
  cluster's config and data directory, start a whole working cluster: a
  trade goes through, the exporter answers, and SIGTERM (what ``systemctl
  stop`` sends) stops every node with exit status 0.

What only a real systemd host shows is not tested here: the bazaar user,
the state directory's creation, and the sandbox options' effect at run time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from common.sockets import free_tcp_ports
from harness.process import ROOT, Process
from tests.systemd import TARGET, UNITS, command, module_of, parse

ANALYZE = shutil.which("systemd-analyze")
# systemd-analyze security's scale: 0 (locked down) to 10 (exposed); as a threshold, tenths.
MAX_EXPOSURE = 2.0


def _help(module: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_flag_a_unit_passes_is_one_its_module_knows():
    for path in UNITS:
        unit = parse(path)
        text = _help(module_of(unit))
        for flag in (word for word in command(unit, "1") if word.startswith("--")):
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", text), f"{path.name}: {flag} is not in --help"


@pytest.fixture
def installed(tmp_path):
    """Copies of the units as verify will read them: this python, templates as instance 1."""
    for path in [*UNITS, TARGET]:
        name = path.name.replace("@.", "@1.")
        (tmp_path / name).write_text(path.read_text().replace("/opt/bazaar/.venv/bin/python", sys.executable))
    return sorted(tmp_path.iterdir())


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed: the units are only parsed")
def test_systemd_analyze_verifies_every_unit(installed):
    done = subprocess.run([ANALYZE, "verify", "--man=no", *map(str, installed)], capture_output=True, text=True,
                          timeout=60)
    # verify exits 0 on some warnings (an unknown key): any output is a finding.
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stderr


def test_systemd_analyze_rates_every_unit_as_locked_down(installed):
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    if "--offline" not in subprocess.run([ANALYZE, "--help"], capture_output=True, text=True).stdout:
        pytest.skip("systemd-analyze is older than 250: no security --offline")
    for path in (p for p in installed if p.suffix == ".service"):
        done = subprocess.run([ANALYZE, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}",
                               "--no-pager", str(path)], capture_output=True, text=True, timeout=60)
        level = re.search(r"exposure level for \S+: ([\d.]+)", done.stdout)
        assert done.returncode == 0 and level, f"{path.name}: {done.stdout[-500:]}{done.stderr}"
        assert float(level.group(1)) <= MAX_EXPOSURE


@pytest.mark.slow
def test_the_units_command_lines_start_a_working_cluster(cluster_factory, tmp_path):
    cluster = cluster_factory(start=False)  # its config (free ports) and its directories, no processes
    (metrics_port,) = free_tcp_ports(1)
    instances = {"bazaar-order@.service": ["1", "2", "3"], "bazaar-frontend@.service": ["frontend"]}
    started: list[Process] = []
    try:
        for path in UNITS:
            unit = parse(path)
            env = {**unit.environment(), "BAZAAR_PROMETHEUS": f"127.0.0.1:{metrics_port}"}
            for instance in instances.get(path.name, [None]):
                argv = command(unit, instance, python=sys.executable, config=str(cluster.config_path),
                               data=str(cluster.workdir / "data"), env=env)
                name = path.name.replace("@.", f"@{instance}.") if instance else path.name
                process = Process(name, argv[1:], tmp_path / f"{name}.log", {**_base_env(), **unit.environment()})
                started.append(process.start())
        cluster.wait_ready()
        reply = cluster.api.post("/orders", {"name": "GameStart", "quantity": 1, "type": "buy"})
        assert reply.status == 200, reply.body
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as scrape:
            assert b'bazaar_cluster_node_up{node="order-1"} 1.0' in scrape.read()
        for process in reversed(started):
            assert process.stop() == 0, f"{process.name} did not stop cleanly:\n{process.log_tail()}"
    finally:
        for process in started:
            process.kill()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "BAZAAR_LOG_FORMAT"}
