"""The build context for an artifact's image, staged beside the artifact, never in it.

The artifact folder stays exactly what `mlpack build` wrote (`mlpack verify` keeps
passing); the staged copy adds what the Dockerfile uses when present:

- `container/wheels/`: the mlpack-agent wheel, built from mlpack's copy of `agent/`.
- `container/site-packages/`: every requirement installed on the host for the target's
  platform (`uv pip install --target --python-platform`), so the image build needs no
  network, no compiler and, for arm64, no emulation of pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import MlpackError
from ..resources import data_dir
from ..targets import Target

# Copied into the context; the rest of the artifact (reports, lambda zip, iac) is not needed.
CONTEXT_PARTS = ("container", "model", "bento", "agent", "lambda/app", "manifest.json")


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise MlpackError("uv is not installed", "pip install uv") from None
        return found


def stage_context(artifact: Path, target: Target, dest: Path, prefetch: bool = True) -> Path:
    """Copy the artifact's image inputs into `dest` (a new folder) and add wheels."""
    dest.mkdir(parents=True)
    for part in CONTEXT_PARTS:
        source = artifact / part
        if source.is_dir():
            shutil.copytree(source, dest / part, copy_function=_link_or_copy)
        elif source.is_file():
            _link_or_copy(source, dest / part)
    container = dest / "container"
    if not (container / "requirements.txt").is_file():
        raise MlpackError(f"{artifact.name} has no container/requirements.txt",
                          "rebuild the artifact with `mlpack build`")
    wheels = container / "wheels"
    wheels.mkdir()
    if any(_needs_agent(path) for path in container.glob("*requirements.txt")):
        build_agent_wheel(wheels)
    if prefetch:
        # requirements.txt -> site-packages/, agent-requirements.txt -> agent-site-packages/
        for requirements in sorted(container.glob("*requirements.txt")):
            prefix = requirements.name.removesuffix("requirements.txt")
            install_site_packages(target, requirements, wheels, container / f"{prefix}site-packages")
    return dest


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _needs_agent(requirements: Path) -> bool:
    return any(line.split("#")[0].strip().startswith("mlpack-agent") for line in requirements.read_text().splitlines())


def build_agent_wheel(out: Path) -> Path:
    """Build the mlpack-agent wheel (pure Python) from the agent source mlpack ships."""
    source = data_dir("agent")
    with tempfile.TemporaryDirectory(prefix="mlpack-agent-src-") as tmp:
        # A private copy: the installed source may be read-only, and builds write beside it.
        src = Path(tmp) / "agent"
        shutil.copytree(source, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dist", "build"))
        done = subprocess.run([uv_binary(), "build", "--wheel", "--quiet", "--out-dir", str(out), str(src)],
                              capture_output=True, text=True)
    wheels = sorted(out.glob("mlpack_agent-*.whl"))
    if done.returncode != 0 or not wheels:
        raise MlpackError(f"could not build the mlpack-agent wheel: {_tail(done.stderr)}",
                          "check that PyPI (for hatchling) is reachable or cached by uv")
    return wheels[-1]


def install_site_packages(target: Target, requirements: Path, wheels: Path, site: Path) -> None:
    """Install the image's Python packages for the target's platform, on the host."""
    command = [
        uv_binary(), "pip", "install", "--quiet", "--target", str(site),
        "--python-platform", target.platform.python_platform,
        "--python-version", target.platform.python_version,
        "--only-binary", ":all:", "--no-compile", "--link-mode", "copy",
        "--find-links", str(wheels), "-r", str(requirements),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise MlpackError(
            f"could not install the image's wheels for {target.platform.python_platform}: {_tail(done.stderr)}",
            "check that PyPI is reachable (or its wheels are in uv's cache)",
        )


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return " ".join(lines[-2:])[:300] or "no output"
