"""A command in a child process, with its own peak resident memory and wall time."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_mb: float  # the child's own peak RSS, as the kernel reports it (wait4's ru_maxrss)
    returncode: int
    output: str  # its stdout and stderr, the last 4,000 characters


def run_child(command: list[str], log: Path) -> ChildRun:
    """Run `command`, its output into `log` (a file: a full pipe would block the child)."""
    started = time.perf_counter()
    with open(log, "w+b") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")[-4000:]
    return ChildRun(seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), text)
