"""The benchmark tools under bench/, run as a user runs them (``python -m
bench.<tool>``) with tiny settings: each exits 0, prints every figure it
promises with sane values, and leaves no process behind.

What they measure is not asserted (this machine is shared and noisy; the
figures belong in docs/PERFORMANCE.md): only that they measure it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from common.trace import PARALLEL, STAGES
from harness.cluster import ROOT

pytestmark = pytest.mark.slow


def processes_naming(text: str) -> list[int]:
    """Live processes whose command line holds ``text``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def run_bench(tool: str, args: list[str], timeout: float) -> str:
    """``python -m bench.<tool> <args>`` in its own process group, bounded;
    fails the test on a non-zero exit or if the tool left a process behind."""
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{tool}", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        pytest.fail(f"python -m bench.{tool} ran over {timeout}s:\n{out}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    # a private cluster's directory is named in its nodes' command lines
    for tmp in re.findall(r"(/\S*bazaar-[a-z]+-\w+)", out):
        left = processes_naming(tmp)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"bench.{tool} left processes of {tmp} running: {left}"
    return out


def figure(out: str, label: str) -> float:
    """The first number after ``label`` in a table row."""
    match = re.search(re.escape(label) + r"\s*\|\s*([0-9.]+)", out)
    assert match, f"no figure for {label!r} in:\n{out}"
    return float(match.group(1))


def test_trace_prints_the_budget_of_every_stage():
    out = run_bench("trace", ["--spawn", "-n", "40", "--max-seconds", "60"], timeout=120)
    assert re.search(r"^\d+ traced trades", out, re.M), out
    for name, _, _ in STAGES + PARALLEL:
        assert figure(out, name) >= 0
    total = figure(out, "trade, as the client measured")
    assert total > figure(out, "cached lookup, same run") > 0
    assert figure(out, "bare ZeroMQ round trip to the catalog") > 0
    assert re.search(r"trade p50 / cached lookup p50: [0-9.]+", out)


def test_codec_bench_compares_every_trade_message_with_bare_msgpack():
    out = run_bench("codec", ["-n", "200", "--repeat", "1"], timeout=60)
    for name in ("place_trade", "read_committed", "committed_entries", "append_entries", "append_entries (heartbeat)",
                 "append_reply", "trade_done", "stock_changes", "all of them"):
        row = re.search(r"^\| " + re.escape(name) + r" \|([^\n]*)$", out, re.M)
        assert row, f"no row for {name}:\n{out}"
        numbers = [float(x) for x in re.findall(r"[0-9.]+", row.group(1))]
        assert numbers and all(x > 0 for x in numbers), row.group(0)


def test_wsgi_bench_measures_both_servers_and_stops_them():
    out = run_bench("wsgi", ["--clients", "1", "-n", "30", "--rounds", "1"], timeout=120)
    for server in ("gunicorn gevent", "gevent.pywsgi"):
        assert re.search(r"^\| 1 \| " + re.escape(server) + r" \| [0-9.]+ \| \d+ \| \d+ \|", out, re.M), out
    for label in ("requests/s", "p50"):
        assert re.search(rf"  {re.escape(label)}: [0-9.]+ \(", out), out
    # so few requests may take less CPU than /proc's 10 ms tick can show: a figure, or why there is none
    assert re.search(r"  server CPU per request: ([0-9.]+ \(|n/a \(phases too short)", out), out
    assert "stopped gunicorn" in out and "stopped bare-route" in out


def test_catchup_bench_rejoins_a_wiped_replica_and_checks_the_history():
    out = run_bench("catchup", ["--entries", "2000", "--load", "1", "--max-seconds", "60"], timeout=120)
    assert re.search(r"caught up at index \d+ .* [0-9,]+ entries/s", out), out
    assert "promises kept" in out


def test_failover_bench_kills_the_leader_and_finds_nothing_lost():
    out = run_bench("failover", ["--rounds", "1", "--mode", "kill", "--clients", "1"], timeout=120)
    assert re.search(r"^kill\s+1\s+[0-9.]+", out, re.M), out
    assert re.search(r"lost: 0; duplicated: 0; other violations: 0", out), out
