"""Paths that a manifest or a target names: they must stay inside the folder they belong to.

A manifest names files that commands act on (the Lambda zip deploy uploads, the model,
the Bento serve runs, processing files, every entry of `files`). `ArtifactPath` refuses,
when the manifest is read, any name that could leave the artifact: absolute, `..`, `.`,
empty parts, backslashes. `inside` then checks the real path, after symbolic links, when
a command opens one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from .errors import InputError

RULE = "a relative path inside the artifact: no leading '/', no '..' or '.' parts, no '\\'"


def check_relative(path: str) -> str:
    """`path` as is, if it is a plain relative POSIX path; ValueError otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path \
            or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{path!r} is not {RULE}")
    return path


def check_folder(path: str) -> str:
    """Like `check_relative`, but "" (the folder itself) is allowed."""
    return path if path == "" else check_relative(path)


ArtifactPath = Annotated[str, AfterValidator(check_relative)]
FolderPath = Annotated[str, AfterValidator(check_folder)]


def inside(root: Path, relative: str) -> Path:
    """root/relative, refused when it (or a link on the way) leads out of root."""
    try:
        check_relative(relative)
    except ValueError as exc:
        raise InputError(f"{root.name}: {exc}", "rebuild the artifact with `mlpack build`") from None
    base = root.resolve()
    path = base / relative
    if not path.resolve().is_relative_to(base):
        raise InputError(f"{root.name}/{relative} leads outside the artifact (to {path.resolve()})",
                         "an artifact holds no links: rebuild it with `mlpack build`")
    return path
