"""Where mlpack's data (targets, templates, the agent's source) lives.

In a wheel it sits inside the package (`mlpack/_data/...`, see pyproject.toml); in a
checkout of the repository it sits at the top level beside `packager/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent.parent


def data_dir(name: str) -> Path:
    """The folder `targets`, `templates` or `agent`, wherever this mlpack was installed from."""
    for candidate in (_PACKAGE / "_data" / name, _REPO / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mlpack's data folder {name!r} is missing from this installation")


def runtime_dir() -> Path:
    """The serving runtime copied into every artifact as the `mlpack_runtime` package."""
    return _PACKAGE / "runtime"
