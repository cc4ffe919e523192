"""Reading the systemd units in deploy/systemd, for the tests that check them.

:func:`parse` reads a unit file the way systemd does (sections, ``key=value``
lines, repeated keys kept in order, ``#``/``;`` comments, a backslash
continuing a line) and refuses anything else. :func:`command` turns a unit's
``ExecStart=`` into the argv it would run, with the install paths mapped to
where this checkout and a test cluster live.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.process import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
TARGET = DEPLOY / "systemd" / "bazaar.target"
# Where the units expect things on a host (README.md, "Deploying with systemd").
PYTHON = "/opt/bazaar/.venv/bin/python"
CONFIG = "/etc/bazaar/config.toml"
DATA = "/var/lib/bazaar"
HOME = "/opt/bazaar"


@dataclass
class Unit:
    path: Path
    sections: dict[str, list[tuple[str, str]]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def template(self) -> bool:
        return self.name.endswith("@.service")

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, section: str, key: str) -> str | None:
        """The last value of ``key`` (systemd's rule for single-valued keys)."""
        found = self.values(section, key)
        return found[-1] if found else None

    def environment(self) -> dict[str, str]:
        """``Environment=`` assignments, in order (no EnvironmentFile)."""
        env: dict[str, str] = {}
        for line in self.values("Service", "Environment"):
            for item in shlex.split(line):
                key, _, value = item.partition("=")
                env[key] = value
        return env


def parse(path: Path) -> Unit:
    """:raises ValueError: naming the line that is neither a section, a
    ``key=value``, a comment nor blank."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            if current in sections:
                raise ValueError(f"{path.name}:{number}: section [{current}] appears twice")
            sections[current] = []
        elif "=" in line and current is not None and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", line.split("=")[0].strip()):
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
        else:
            raise ValueError(f"{path.name}:{number}: not a section, key=value or comment: {raw!r}")
    return Unit(path, sections)


def command(unit: Unit, instance: str | None = None, python: str = PYTHON, config: str = CONFIG,
            data: str = DATA, env: dict[str, str] | None = None) -> list[str]:
    """The argv of the unit's ``ExecStart=``, with ``%i`` the instance and
    ``${VAR}`` from ``env`` (default: the unit's ``Environment=``), the
    install paths replaced by ``python``, ``config`` and ``data``."""
    (line,) = unit.values("Service", "ExecStart")
    variables = unit.environment() if env is None else env
    argv = []
    for word in shlex.split(line):
        if instance is not None:
            word = word.replace("%i", instance)
        word = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], word)
        word = {PYTHON: python, CONFIG: config, DATA: data}.get(word, word)
        argv.append(word)
    return argv


def module_of(unit: Unit) -> str:
    """The module its ExecStart runs with ``-m``."""
    argv = command(unit, "1")
    return argv[argv.index("-m") + 1]
