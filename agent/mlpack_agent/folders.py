"""Folders only the agent's user can enter: where its socket and its disk buffer live.

The socket's folder is what keeps other users away from the socket (sending to a Unix
socket needs search permission on every folder of its path), so the agent creates it
mode 0700 and refuses to bind in a folder that others can enter or that another user owns
(a squatted /tmp/mlpack-agent, or a shared folder such as /tmp itself).

One kind of link is followed: the one systemd makes for a unit with DynamicUser=, whose
RuntimeDirectory= and StateDirectory= live under a root-only `private/` folder and are
reached through /run/NAME -> private/NAME (systemd.exec(5)). Only root can have made or
changed such a link (root owns it and the folder it is in, which nobody else can write),
so following it lets no other user choose where the socket goes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFolder(OSError):
    """A folder the agent will not put its socket in; the message says why and the fix."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` and every missing parent with mode 0700 (Path.mkdir gives only the
    last one the mode); folders that exist are left as they are."""
    folder = Path(path)
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            pass  # created meanwhile; check_private judges it where it matters
    return folder


def check_private(folder: str | os.PathLike[str], what: str = "the socket's folder") -> None:
    """Raise UnsafeFolder unless `folder` is a real folder owned by this process's user that
    no other user can enter (no group or other permission bits); `what` names it."""
    folder = _follow_root_link(Path(folder))
    info = os.lstat(folder)
    uid = os.geteuid()
    fix = (f"use a folder only uid {uid} can enter (mode 0700), or a path whose folder does not exist "
           "yet (the agent creates it with mode 0700)")
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{what} {folder} is not a folder (a link or a file); {fix}")
    if info.st_uid != uid:
        raise UnsafeFolder(f"{what} {folder} belongs to uid {info.st_uid}, not to the agent's user "
                           f"(uid {uid}); {fix}")
    if info.st_mode & 0o077:
        raise UnsafeFolder(f"other users can enter {what} {folder} (mode "
                           f"{stat.S_IMODE(info.st_mode):04o}); {fix}")


def _follow_root_link(folder: Path) -> Path:
    """The folder a link made by root, in a folder only root can write, points to (systemd's
    DynamicUser= layout, see above); any other path as it is, for check_private to judge."""
    if not folder.is_symlink():
        return folder
    link, parent = os.lstat(folder), os.stat(folder.parent)
    if link.st_uid != 0 or parent.st_uid != 0 or parent.st_mode & 0o022:
        return folder  # a link someone else could have made: refused as a link
    return folder.resolve(strict=True)
