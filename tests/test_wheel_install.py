"""An installed wheel works on its own: fresh venv, no repository, all four targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import user_environ, uv
from .pyramid import heavy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
@heavy
def installed(mlpack_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with mlpack installed from its wheel (not editable)."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    uv("venv", "--python", sys.executable, str(venv))
    uv("pip", "install", "--python", str(venv / "bin" / "python"), str(mlpack_wheel))
    return venv


def test_the_wheel_carries_targets_templates_and_the_agent(installed: Path) -> None:
    code = "import mlpack.resources as r; print([str(r.data_dir(n)) for n in ('targets', 'templates', 'agent')])"
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd="/", capture_output=True,
                         text=True, check=True)
    assert all("site-packages/mlpack/_data/" in p for p in json.loads(out.stdout.replace("'", '"')))


@pytest.mark.parametrize("target", ["x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda"])
def test_mlpack_build_works_from_the_wheel_in_an_empty_folder(installed: Path, tmp_path: Path, target: str) -> None:
    # A user's environment: Python writes bytecode beside what it imports, so the first build
    # compiles mlpack and its dependencies and the commands after it reuse that (CI machines
    # often set PYTHONDONTWRITEBYTECODE, under which every command compiled all it imported).
    env = user_environ(drop=("PYTHONPATH", "VIRTUAL_ENV"))
    env["PATH"] = f"{installed / 'bin'}:{env['PATH']}"
    run = subprocess.run(["mlpack", "build", "--target", target, "-q"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    artifact = tmp_path / f"digits-demo-{target}"
    manifest = json.loads((artifact / "manifest.json").read_text())
    check = subprocess.run(["mlpack", "verify", str(artifact)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[0] == f"{artifact.name}: {len(manifest['files'])} files match manifest.json; not signed"
