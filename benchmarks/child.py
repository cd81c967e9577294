"""A command in a child process, with its own peak resident memory and wall time."""

from __future__ import annotations

import os
import subprocess
import sys
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


def optimize_command(model: Path, target: str, out: Path, *options: str,
                     timing_budget_s: float | None = None) -> list[str]:
    """`mlpack optimize MODEL --target TARGET --out OUT OPTIONS...` as a user runs it; with
    `timing_budget_s`, that many seconds of latency timing instead of the pipeline's default
    (quick runs: timing adds time, not memory)."""
    preset = "" if timing_budget_s is None else \
        f"import mlpack.optimize.pipeline as p; p.TIMING_BUDGET_S = {timing_budget_s!r}; "
    return [sys.executable, "-c", preset + "from mlpack.cli import main; main()", "optimize", str(model),
            "--target", target, "--out", str(out), *options]
