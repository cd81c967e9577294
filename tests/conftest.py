"""Shared fixtures. Models are made here with onnx.helper and scikit-learn: no downloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from mlpack.build import BuildRequest, BuildResult, build
from mlpack.progress import Progress

from .models import linear_model

REPO = Path(__file__).resolve().parents[1]


def uv(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uv", *args], check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the demo model cache out of the user's home during tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPACK_CACHE", str(tmp_path_factory.mktemp("mlpack-cache")))
    mp.setenv("BENTOML_DO_NOT_TRACK", "true")
    yield
    mp.undo()


@pytest.fixture
def linear_onnx(tmp_path: Path) -> Path:
    return linear_model(tmp_path / "linear.onnx")


@pytest.fixture(scope="session")
def demo_artifact(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], BuildResult]:
    """Build the demo for a target once per test session: demo_artifact("x86-cpu")."""
    out = tmp_path_factory.mktemp("demo-artifacts")
    built: dict[str, BuildResult] = {}

    def get(target: str) -> BuildResult:
        if target not in built:
            built[target] = build(BuildRequest(target=target, out=out), Progress(quiet=True))
        return built[target]

    return get


@pytest.fixture(scope="session")
def mlpack_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mlpack wheel built from this repository, once per test session."""
    dist = tmp_path_factory.mktemp("wheel-dist")
    uv("build", "--wheel", "--out-dir", str(dist), str(REPO))
    wheels = list(dist.glob("mlpack-*.whl"))
    assert len(wheels) == 1
    return wheels[0]
