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
import tempfile
from pathlib import Path

from ..errors import MlpackError
from ..resources import data_dir
from ..targets import Target
from ..uv import build_wheel, install_for_platform

# Copied into the context; the rest of the artifact (reports, lambda zip, iac) is not needed.
CONTEXT_PARTS = ("container", "model", "bento", "agent", "lambda/app", "manifest.json", "sbom.cdx.json")


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
        check_native_libraries(artifact, target, container / "site-packages")
    return dest


def check_native_libraries(artifact: Path, target: Target, site: Path) -> None:
    """A GPU image: its CUDA provider's libraries resolve in what was staged (image/native_libs.py)."""
    if target.cuda is None:
        return
    from ..artifact import Artifact
    from ..render.facts import container_facts
    from ..render.context import RenderContext
    from .native_libs import check_cuda_libraries

    cuda = container_facts(RenderContext.from_manifest(Artifact.open(artifact).manifest)).cuda
    check_cuda_libraries(site, target, cuda)


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
        build_wheel(src, out, "building the mlpack-agent wheel")
    wheels = sorted(out.glob("mlpack_agent-*.whl"))
    if not wheels:
        raise MlpackError("building the mlpack-agent wheel made no wheel", "rerun with --debug")
    return wheels[-1]


def install_site_packages(target: Target, requirements: Path, wheels: Path, site: Path) -> None:
    """Install the image's Python packages for the target's platform, on the host."""
    install_for_platform(
        site, python_platform=target.platform.python_platform, python_version=target.platform.python_version,
        requirements=requirements, find_links=wheels, what="installing the image's wheels",
    )
    drop_uv_cache_info(site)


def drop_uv_cache_info(site: Path) -> None:
    """Remove the `uv_cache.json` uv leaves in a locally built wheel's dist-info (the
    mlpack-agent wheel), and its RECORD line: it holds the install time, the one thing
    that made two images of the same artifact differ. Nothing reads it at run time."""
    for info in site.glob("*.dist-info/uv_cache.json"):
        record = info.with_name("RECORD")
        if record.is_file():
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            name = f"{info.parent.name}/{info.name},"
            record.write_text("".join(line for line in lines if not line.startswith(name)), encoding="utf-8")
        info.unlink()
