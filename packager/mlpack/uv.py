"""The one way mlpack runs `uv` (an external tool): finding it, installing a target
platform's wheels into a folder, and building a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from .errors import MlpackError

OFFLINE_HINT = "check that PyPI (or your index, via UV_INDEX_URL) is reachable, or that uv's cache holds the wheels"


def uv_binary() -> str:
    """The uv executable: the one the `uv` package installed beside mlpack, else PATH's."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise MlpackError("uv is not installed", "pip install uv") from None
        return found


# Settings of the user's environment that conflict with the flags mlpack passes: uv refuses
# `--no-compile` beside UV_COMPILE_BYTECODE=1 (a common setting in Dockerfiles), and
# mlpack installs wheels for another platform, which this host's Python must not compile.
_DECIDED_HERE = ("UV_COMPILE_BYTECODE",)


def run_uv(args: Sequence[str], what: str, hint: str = OFFLINE_HINT) -> subprocess.CompletedProcess:
    """Run `uv ARGS`; a failure is one MlpackError naming `what` failed and uv's error."""
    env = {k: v for k, v in os.environ.items() if k not in _DECIDED_HERE}
    done = subprocess.run([uv_binary(), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise MlpackError(f"{what} failed: {_tail(done.stderr)}", hint)
    return done


def install_for_platform(
    dest: Path,
    *,
    python_platform: str,
    python_version: str,
    packages: Sequence[str] = (),
    requirements: Path | None = None,
    find_links: Path | None = None,
    no_deps: bool = False,
    what: str = "installing wheels",
) -> None:
    """Install binary wheels for another platform into `dest` without running any of them
    (`uv pip install --target --python-platform --only-binary :all: --no-compile`);
    `no_deps` installs the packages alone."""
    args = [
        "pip", "install", "--quiet", "--target", str(dest),
        "--python-platform", python_platform, "--python-version", python_version,
        "--only-binary", ":all:", "--no-compile", "--link-mode", "copy", "--no-python-downloads",
    ]
    if find_links is not None:
        args += ["--find-links", str(find_links)]
    if requirements is not None:
        args += ["-r", str(requirements)]
    if no_deps:
        args.append("--no-deps")
    run_uv([*args, *packages], f"{what} for {python_platform}")


def build_wheel(source: Path, out: Path, what: str = "building a wheel") -> None:
    run_uv(["build", "--wheel", "--quiet", "--out-dir", str(out), str(source)], what,
           "check that PyPI (for the build backend) is reachable or cached by uv")


def _tail(text: str) -> str:
    """uv's last error with its causes, without the usage text that may follow it; else
    its last two lines."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if ln.lower().startswith("error:")]
    if not starts:
        return " ".join(lines[-2:])[:300] or "no output"
    error = []
    for line in lines[starts[-1]:]:
        if line.startswith(("Usage:", "For more information")):
            break
        error.append(line)
    return " ".join(error)[:300]
