"""Writing files and folders so that readers see the old version or the new one, never a mix.

Every command that replaces something in place (build's artifact folder, iac's `iac/`,
optimize's output folder, the manifest) goes through these helpers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file beside its final name and rename it over the old one."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
        fh.write(raw)
    try:
        os.replace(fh.name, path)
    except BaseException:
        os.unlink(fh.name)
        raise


def swap_folder(new: Path, dest: Path) -> None:
    """Move the finished folder `new` to `dest`; an existing `dest` is removed only after.

    Both must be on one file system. If the final rename fails, the old folder is put
    back where it was, so `dest` is never left missing.
    """
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except BaseException:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_folder(dest: Path, suffix: str = ".partial") -> Iterator[Path]:
    """A new empty folder beside `dest` to build into; it replaces `dest` when the block
    ends without error, and is removed (leaving `dest` untouched) when it raises."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent))
    try:
        yield tmp
        swap_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
