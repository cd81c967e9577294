"""Writing files and folders so that readers see the old version or the new one, never a mix,
and so that a process killed half-way leaves nothing the next one does not clean up.

Every command that replaces something in place (build's artifact folder, iac's `iac/`,
optimize's output folder, the manifest) goes through these helpers.

Folders a process works in (`staged_folder`, `scratch_folder`) carry its pid in their
name and an flock on the folder, held while it works (and by the children it hands the
lock to, see `Owned.fd`). A `kill -9` releases the lock with the process; `sweep` then
removes what is left: only folders whose lock it can take *and* whose pid is not a live
process, so a running build's folders are never touched (not even one in another pid
namespace sharing the folder, whose lock the kernel still sees).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_RANDOM = r"[a-z0-9_]{8}"  # what mkdtemp adds
STAGED = re.compile(rf"^\.(?P<dest>.+)\.(?P<pid>\d+)-{_RANDOM}\.partial$")  # .NAME.PID-XXXXXXXX.partial
REPLACED = re.compile(r"^\.(?P<dest>.+)\.old-(?P<pid>\d+)$")  # .NAME.old-PID, between swap_folder's renames
SCRATCH = re.compile(rf"^mlpack-[a-z-]+\.(?P<pid>\d+)-{_RANDOM}$")  # mlpack-WHAT.PID-XXXXXXXX


@dataclass(frozen=True)
class Owned:
    """A folder this process works in, and the descriptor holding its lock: pass it to a
    child (`subprocess.run(..., pass_fds=(owned.fd,))`) that goes on using the folder, so
    that the folder stays claimed while the child runs, even if this process is killed."""

    path: Path
    fd: int


def _lock(path: Path, blocking: bool = True) -> int | None:
    """An exclusive flock on a folder (not through a link); None when another holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):  # not a pid mlpack wrote: leave it alone
        return True
    return True


def _remove(path: Path) -> None:
    """A folder with what it holds, or a file or a link (never what a link points to)."""
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def sweep(folder: Path, dest: str | None = None) -> list[str]:
    """Remove what killed mlpack processes left in `folder` (only for `dest`, if given):
    staged `.NAME.PID-XXXXXXXX.partial` and scratch `mlpack-WHAT.PID-XXXXXXXX` folders, and
    a replaced `.NAME.old-PID`, which is put back as NAME if NAME is missing (killed
    between swap_folder's two renames). Returns the names it removed or restored."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    done = []
    for name in names:
        match = next((m for m in (p.match(name) for p in (STAGED, REPLACED, SCRATCH)) if m), None)
        if match is None or (dest is not None and match.groupdict().get("dest") != dest):
            continue
        path = folder / name
        if _alive(int(match["pid"])):
            continue
        fd = _lock(path, blocking=False)
        if fd is None and path.is_dir() and not path.is_symlink():
            continue  # a child of the dead process still works in it
        try:
            if match.re is REPLACED and not os.path.lexists(folder / match["dest"]):
                os.rename(path, folder / match["dest"])
                done.append(f"{name} (put back as {match['dest']})")
            else:
                _remove(path)
                done.append(name)
        finally:
            if fd is not None:
                os.close(fd)
    return done


@contextmanager
def scratch_folder(what: str, folder: Path | None = None) -> Iterator[Owned]:
    """A private temporary folder `mlpack-WHAT.PID-XXXXXXXX` (in the temporary folder, or
    `folder`), claimed while the block runs and removed after it."""
    path = Path(tempfile.mkdtemp(prefix=f"mlpack-{what}.{os.getpid()}-", dir=folder))
    fd = _lock(path)
    assert fd is not None, path
    try:
        yield Owned(path, fd)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


@contextmanager
def created_folders(path: Path) -> Iterator[None]:
    """When the block raises, remove `path` and its parents again if the block created them
    and they are still empty (a failed build leaves no empty --out behind)."""
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


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
    back where it was, so `dest` is never left missing (and a kill between the two renames
    leaves `.NAME.old-PID`, which `sweep` puts back). A `dest` that is a link (even a
    dangling one) is replaced; what it points to is left as it was.
    """
    old, fd = None, None
    if os.path.lexists(dest):
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        _remove(old)
        fd = _lock(dest, blocking=False)  # claimed while it waits to be removed (None for a link)
        os.rename(dest, old)
    try:
        try:
            os.rename(new, dest)
        except BaseException:
            if old is not None:
                os.rename(old, dest)
            raise
        if old is not None:
            _remove(old)
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """A new empty folder `.NAME.PID-XXXXXXXX.partial` beside `dest` to build into; it
    replaces `dest` when the block ends without error, and is removed (leaving `dest`
    untouched) when it raises. What killed processes left for the same `dest` goes first."""
    sweep(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".partial", dir=dest.parent))
    fd = _lock(tmp)
    try:
        yield tmp
        swap_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)
