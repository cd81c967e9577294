"""The processes `mlpack serve` runs, each in its own process group, stopped together.

Every child starts a new session, so its own children (BentoML's workers, the agent's
re-exec) share its process group, and stopping it means signalling the whole group:
SIGTERM, a grace period, then SIGKILL. A terminal's Ctrl-C reaches only mlpack, which
then stops the groups in reverse order of start (the service before its agent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from ..errors import MlpackError

GRACE_S = 15.0  # what a child gets between SIGTERM and SIGKILL


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path | None = None  # where its output goes, when not to the terminal

    def tail(self, lines: int = 8) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())[-1200:]


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group. Zombies do not count: a killed grandchild waits
    for its new parent (init, where init reaps at all) and runs nothing."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@dataclass
class Processes:
    """Children started in their own process groups; `stop()` leaves none behind."""

    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path | None = None,
              log: Path | None = None) -> Child:
        out: IO[bytes] | None = open(log, "ab") if log is not None else None
        try:
            # Without a log, a child writes to this process's stderr: stdout stays for mlpack's own lines.
            proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out if out is not None else sys.__stderr__,
                                    stderr=subprocess.STDOUT if out is not None else sys.__stderr__,
                                    start_new_session=True)
        except OSError as exc:
            raise MlpackError(f"cannot start {name}: {exc.strerror or exc}", "check the installation") from exc
        finally:
            if out is not None:
                out.close()
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        """A child that is no longer running, if any."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self, grace_s: float = GRACE_S) -> None:
        """SIGTERM every group (last started first), wait, SIGKILL what is left."""
        for child in reversed(self.children):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            while group_members(child.proc.pid) and time.monotonic() < deadline:
                child.proc.poll()  # reap the leader, so that its pid does not linger as a zombie
                time.sleep(0.05)
            if group_members(child.proc.pid):
                _signal_group(child.proc.pid, signal.SIGKILL)
            try:
                child.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.children.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class StopSignals:
    """SIGINT and SIGTERM set `stop` instead of raising, while in the `with` block."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: int | None = None
        self._previous: dict[int, Callable | int | None] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = signum
        self.stop.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
