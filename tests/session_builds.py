"""Builds made once per test run and shared by every pytest-xdist worker.

`make test` runs three workers; a session fixture runs once per worker, so the demo
artifacts and the wheel used to be built once in each. `shared(factory, name, make)` runs
`make(folder)` in the first worker that asks, behind a file lock in a folder every worker
of this run shares (the parent of the workers' basetemps: `pytest-N/shared/`); the other
workers wait on the lock and read the pickled result. A new run has a new basetemp, so a
build never outlives the sources it was made from. A failed build leaves no result: the
next worker that asks builds again (and fails the same way).

Shared artifacts must not change: `Snapshot` records every file's size and mtime after a
build, and `changed()` names what differs, so a test that writes into a shared artifact
instead of a copy (`shutil.copytree(...)` to its tmp_path) fails at once, naming the file.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import pytest
from filelock import FileLock

T = TypeVar("T")


def shared_root(factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this run shares (the basetemp itself without xdist)."""
    base = factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    return root


def shared(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], T]) -> T:
    """`make(an empty folder)`, run once per test run whichever worker asks first."""
    root = shared_root(factory)
    folder, result = root / name, root / f"{name}.pickle"
    with FileLock(root / f"{name}.lock"):
        if result.is_file():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
        folder.mkdir()
        value = make(folder)
        partial = result.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(value))
        partial.replace(result)
        return value


@dataclass(frozen=True)
class Snapshot:
    """Every file under a folder, by size and modification time."""

    root: Path
    files: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, root: Path) -> "Snapshot":
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file() or path.is_symlink():
                stat = path.lstat()
                files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
        return cls(root, files)

    def changed(self) -> list[str]:
        """What was added, removed or rewritten since the snapshot."""
        now = Snapshot.of(self.root).files
        return sorted(name for name in self.files.keys() | now.keys() if self.files.get(name) != now.get(name))
