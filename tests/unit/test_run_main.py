"""How a node's process ends when its start fails (common/node.py run_main):
a message, never a traceback, and an exit status a supervisor can act on."""

from __future__ import annotations

import sys

import pytest

from common import node
from common.errors import ConfigError, StorageCorrupt, StorageFull


def fails_with(exc: Exception):
    def main() -> None:
        raise exc
    return main


def test_a_configuration_error_exits_2_with_its_message(capsys):
    with pytest.raises(SystemExit) as info:
        node.run_main(fails_with(ConfigError("heartbeat.interval_ms must be positive")))
    assert info.value.code == 2
    assert capsys.readouterr().err == "configuration error: heartbeat.interval_ms must be positive\n"


def test_data_that_cannot_be_trusted_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        node.run_main(fails_with(StorageCorrupt("data/order-2.sqlite3 is damaged", "data/order-2.sqlite3")))
    assert info.value.code == 2 and "storage error: data/order-2.sqlite3 is damaged" in capsys.readouterr().err


def test_a_full_disk_at_start_exits_1_so_a_supervisor_tries_again(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["order", "--id", "2"])
    full = StorageFull("storage full: cannot write data/order-2.sqlite3 (0 bytes free)", "data/order-2.sqlite3", 0)
    with pytest.raises(SystemExit) as info:
        node.run_main(fails_with(full))
    assert info.value.code == 1
    assert capsys.readouterr().err == "storage error: storage full: cannot write data/order-2.sqlite3 (0 bytes free)\n"


def test_a_node_restarted_from_disk_keeps_what_to_distrust_when_its_start_fails(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["order", "--id", "2", "--distrust-after", "41"])
    restarted = []
    monkeypatch.setattr(node, "_restart", lambda exc: restarted.append(exc) or sys.exit(75))
    full = StorageFull("storage full: cannot write data/order-2.sqlite3 (0 bytes free)", "data/order-2.sqlite3", 0)
    with pytest.raises(SystemExit):
        node.run_main(fails_with(full))
    (again,) = restarted
    assert again.extra_args == [] and "storage full" in str(again)  # the same arguments: --distrust-after 41 stays
