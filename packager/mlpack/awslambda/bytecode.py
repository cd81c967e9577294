"""Bytecode for a read-only install: compile a folder with the function's own Python.

Lambda's `/var/task` is read-only, so a package without `.pyc` files is compiled from
source at every cold start. The files are compiled here by an interpreter of the
function's Python version (bytecode is specific to it, but not to the CPU), as
hash-based `.pyc` with `unchecked-hash` invalidation: no source timestamps in them (a
rebuild gives the same bytes) and no check of the source at import. File names inside
the bytecode (tracebacks) are the paths the files have at run time (`run_at`), not this
build's temporary folder.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlpackError

INVALIDATION_MODE = "unchecked-hash"


@dataclass(frozen=True)
class Compiled:
    python: str  # the interpreter that compiled
    tag: str  # its cache tag, e.g. cpython-312
    files: int  # .pyc files written


def cache_tag(python: str) -> str:
    done = subprocess.run([python, "-c", "import sys; print(sys.implementation.cache_tag)"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise MlpackError(f"{python} did not start: {done.stderr.strip()[-200:]}")
    return done.stdout.strip()


def compile_folder(folder: Path, python: str, run_at: str) -> Compiled:
    """Write __pycache__/*.pyc beside every .py under `folder` (compiled as `run_at/...`)."""
    folder = folder.resolve()
    # Sequential on purpose: one process compiling in sorted order writes the same bytes
    # every time.
    done = subprocess.run(
        [python, "-m", "compileall", "-q", "--invalidation-mode", INVALIDATION_MODE,
         "-s", str(folder), "-p", run_at, str(folder)],
        capture_output=True, text=True, timeout=900,
    )
    if done.returncode != 0:
        # A file that does not compile for this version (a Python 2 leftover in a wheel)
        # is never imported by the handler either; anything else is an error.
        failed = [ln for ln in done.stdout.splitlines() if ln.startswith("*** Error compiling")]
        if not failed and done.returncode != 0:
            raise MlpackError(f"compiling bytecode with {python} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    tag = cache_tag(python)
    return Compiled(python=python, tag=tag, files=sum(1 for _ in folder.rglob(f"*.{tag}.pyc")))
