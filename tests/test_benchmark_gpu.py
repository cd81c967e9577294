"""`python -m benchmarks.gpu`, the parts that run without a GPU (the GPU run itself needs one).

It builds cuda-gpu artifacts; on a host where CUDA does not load it fails, naming why, rather
than reporting CPU figures as GPU ones; with --allow-cpu (only to exercise the machinery) its
table says in bold that these are not GPU figures; with no run at all the section says the
GPU table has not been produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.pinned_runtime.environment import runtime_env
from mlpack.targets import load_target

from .conftest import REPO
from .pyramid import heavy
from .quick_checks import quick_check

pytestmark = pytest.mark.slow


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=900)


@pytest.fixture(scope="module")
@heavy
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-bench")
    done = bench("build", "--out", str(out), "--quick")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_build_keeps_each_app_its_images_cuda_libraries_and_the_float_reference(built: Path) -> None:
    plan = json.loads((built / "plan.json").read_text())
    assert [a["name"] for a in plan["artifacts"]] == ["demo", "cnn"]
    cnn = plan["artifacts"][1]
    assert "libcudnn_cnn.so.9" in cnn["cudnn"] and cnn["nvrtc"]
    assert plan["onnxruntime"] == f"onnxruntime-gpu=={load_target('cuda-gpu').runtime.version}"
    for name in ("demo", "cnn"):
        assert (built / "apps" / name / "runtime.json").is_file()
        assert (built / "inputs" / f"{name}-reference.npy").is_file()


def test_the_quick_check_passes_on_this_build(built: Path) -> None:
    """benchmarks/gpu.py --quick --check on the build above (no build of its own)."""
    quick_check("gpu", "--out", str(built), "--built")


def test_where_cuda_does_not_load_the_run_fails_and_says_why(built: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(runtime_env("onnxruntime-gpu", load_target("cuda-gpu").runtime.version))}
    done = bench("run", "--out", str(built), env=env)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(
        "not on CUDA: demo fp16-cuda: the session ran on None (mlpack_runtime.providers.ProviderUnavailable: "
        "CUDAExecutionProvider did not load")


def test_allowed_on_the_cpu_the_table_says_it_holds_no_gpu_figures(built: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(runtime_env("onnxruntime-gpu", load_target("cuda-gpu").runtime.version))}
    done = bench("run", "--out", str(built), "--allow-cpu", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    section = bench("report", "--out", str(built), "--no-write").stdout
    assert "**Run with --allow-cpu on a host without a GPU: the CUDA rows ran on the CPU. These are not GPU " \
           "figures.**" in section
    assert "| fp16-cuda | CPUExecutionProvider |" in section
    assert bench("report", "--out", str(tmp_path), "--no-write").stdout.startswith(
        "## GPU serving (cuda-gpu)\n\nNot produced yet: `python -m benchmarks.gpu` has not run on a GPU host.")
