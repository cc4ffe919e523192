"""One child process in a process group of its own, and waiting on conditions.

:class:`Process` is how the test harness starts every node of a cluster and
how the benchmark starts its own servers: ``python <argv>`` with its output
appended to a log file, in a new session (so a signal to the group reaches
any grandchild too). :func:`wait_until` is the one way
to wait for something: poll a condition with a bound, never sleep a fixed
time; given the process, it fails at once, quoting the log, if the process
exits first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# How long a process may take to exit after SIGTERM (stop) or SIGKILL.
STOP_TIMEOUT_S = 10.0


class Timeout(AssertionError):
    """A condition did not hold in time (or the process it needed exited)."""


@dataclass
class Process:
    """A child ``python <argv>`` run from the source tree.

    :param name: how it is named in messages.
    :param argv: what follows the python executable.
    :param log_path: where stdout and stderr go (appended, with a line per start).
    :param env: the environment (default: this process's, unbuffered).
    """

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, "PYTHONUNBUFFERED": "1"})
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self, extra: list[str] | None = None) -> Process:
        """Start it (``extra`` arguments for this start only).

        :raises RuntimeError: if it already runs.
        """
        if self.alive:
            raise RuntimeError(f"{self.name} already runs")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv, *(extra or [])], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        """The process's pid, which is also its process group's id."""
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (nothing if it is gone)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL the whole group and reap the process."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: it hangs with its connections open."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the group and wait for a clean exit; SIGKILL the group
        if it takes longer than ``timeout`` (or leaves a grandchild behind).

        :returns: the exit status, None if it had to be killed.
        """
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        self.signal(signal.SIGKILL)  # whatever is left of the group
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        return status

    def restart(self, extra: list[str] | None = None) -> Process:
        self.kill()
        return self.start(extra)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02,
               process: Process | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    :param process: if given, give up at once when it exits.
    :raises Timeout: naming ``what`` (and quoting the process's log) after
        ``timeout`` seconds or when ``process`` exits.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and not process.alive:
            raise Timeout(f"{process.name} exited before {what}; end of {process.log_path}:\n{process.log_tail()}")
        if time.monotonic() >= deadline:
            tail = "" if process is None else f"; end of {process.log_path}:\n{process.log_tail()}"
            raise Timeout(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)
