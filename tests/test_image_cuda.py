"""The cuda-gpu image carries the CUDA its onnxruntime-gpu links, and never serves on the CPU
in silence.

The static check reads the CUDA provider's ELF NEEDED entries against what an image holds: it
refuses a CUDA 12 base under the CUDA 13 runtime. The image itself is built with buildah on the
offline stand-in for python:3.11-slim-bookworm (tests/standin.py) from the real NVIDIA wheels;
its build stage checks the same with ldd. This host has no GPU and no NVIDIA driver, so inside
the image the server must refuse to start, naming the driver's library, and serve on the CPU
only when told to.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlpack.artifact import Artifact
from mlpack.model.demo import demo_model
from mlpack.errors import MlpackError
from mlpack.render.facts import container_facts
from mlpack.image.native_libs import check_cuda_libraries, missing_libraries
from mlpack.pinned_runtime.environment import runtime_env
from mlpack.render.context import RenderContext
from mlpack.targets import load_target

from .image_support import buildah, image_config, requires_image_tools
from .standin import ensure_standin
from .pyramid import heavy

GPU = load_target("cuda-gpu")
CUDA_12_BASE = GPU.model_copy(update={
    "image": GPU.image.model_copy(update={
        "base": "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04",
        "provides_libraries": ["libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcurand.so.10",
                               "libcudnn.so.9"]}),
})


def gpu_facts(result):
    return container_facts(RenderContext.from_manifest(result.manifest)).cuda


def test_the_cuda_provider_of_the_pinned_runtime_needs_cuda_13_libraries() -> None:
    # The site of onnxruntime-gpu alone (mlpack's cached environment of the pinned release).
    site = runtime_env("onnxruntime-gpu", GPU.runtime.version)
    missing = missing_libraries(site, ["onnxruntime/capi/libonnxruntime_providers_cuda.so"], [], ["libcuda.so.1"])
    assert sorted(missing["onnxruntime/capi/libonnxruntime_providers_cuda.so"]) == [
        "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10"]


def test_a_cuda_12_base_under_the_cuda_13_runtime_fails_the_image_in_one_line(demo_artifact) -> None:
    site = runtime_env("onnxruntime-gpu", GPU.runtime.version)  # onnxruntime-gpu without its CUDA wheels
    facts = gpu_facts(demo_artifact("cuda-gpu"))
    provider_only = dataclasses.replace(facts, check=facts.check[:1])  # the base would bring cuDNN
    with pytest.raises(MlpackError) as caught:
        check_cuda_libraries(site, CUDA_12_BASE, provider_only)
    line = caught.value.one_line()
    assert line.startswith("the cuda-gpu image could not load onnxruntime-gpu's CUDA provider: libcublas.so.13, "
                           "libcublasLt.so.13, libcudart.so.13 in neither its CUDA wheels")
    assert "its base nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04" in line
    assert "libcurand.so.10" not in line.split(" in neither")[0]  # CUDA 12 has cuRAND 10 too
    assert "\n" not in line



FAKE_LDD = """#!/bin/sh
printf '\\tlinux-vdso.so.1 (0x0000)\\n\\tlibcublas.so.13 => not found\\n\\tlibcuda.so.1 => not found\\n'
printf '\\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x0000)\\n'
"""


def test_the_build_stage_library_check_needs_only_sed_and_grep(tmp_path: Path) -> None:
    """The Dockerfile's ldd check (as rendered: the golden file), run by a shell that has sed
    and grep but no awk, as a base whose packages' install scripts never ran: a library
    ldd cannot find fails the build, the driver's own libcuda.so.1 does not."""
    dockerfile = (Path(__file__).parent / "golden" / "cuda-gpu" / "container" / "Dockerfile").read_text()
    check = next(line for line in dockerfile.splitlines() if "missing=$(" in line).strip().removesuffix("\\").strip()
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("sed", "grep"):
        (tools / name).symlink_to(shutil.which(name))
    (tools / "ldd").write_text(FAKE_LDD)
    (tools / "ldd").chmod(0o755)
    script = f'site=/site; cuda_path=/cuda; lib=provider.so; {check} printf "%s" "$missing"'
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(tools)}, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "libcublas.so.13", "")

# -- the image, built for real -----------------------------------------------------------------

SERVED = """
import json, sys
sys.path.insert(0, "/opt/mlpack/bento/src")
import numpy as np
from mlpack_runtime import ServedModel
model = ServedModel("/opt/mlpack/bento/src")
rows = np.array(json.loads(sys.argv[1]), dtype=np.float32)
print(json.dumps({"provider": model.provider, "label": model.predict({"pixels": rows.tolist()})["label"]}))
"""


@pytest.fixture(scope="module")
@heavy
def cuda_image(demo_artifact, tmp_path_factory):
    """The demo's cuda-gpu artifact (a private copy) with its image built on the stand-in base."""
    from typer.testing import CliRunner

    from mlpack.cli import app

    out = tmp_path_factory.mktemp("cuda-image")
    artifact = Path(shutil.copytree(demo_artifact("cuda-gpu").path, out / "digits-demo-cuda-gpu"))
    result = CliRunner().invoke(app, ["image", str(artifact), "--builder", "buildah", "--base-image",
                                      ensure_standin("amd64"), "-q"])
    assert result.exit_code == 0, result.output
    manifest = Artifact.open(artifact).manifest
    yield artifact, manifest
    buildah("rmi", "-f", manifest.image.id, check=False)


@pytest.mark.slow
@requires_image_tools
def test_the_image_holds_the_cuda_wheels_libraries_and_only_the_cudnn_the_model_needs(cuda_image) -> None:
    artifact, manifest = cuda_image
    config = image_config(manifest.image.local)["Docker"]["config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LD_LIBRARY_PATH"].split(":")[:2] == ["/opt/mlpack/site-packages/nvidia/cu13/lib",
                                                     "/opt/mlpack/site-packages/nvidia/cudnn/lib"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert config["User"] == "10001:10001"
    keep = gpu_facts(Artifact.open(artifact)).cudnn_keep
    container = buildah("from", "--pull=never", manifest.image.local).stdout.strip()
    try:
        root = Path(buildah("mount", container).stdout.strip())
        site = root / "opt/mlpack/site-packages"
        cu13 = sorted(p.name for p in (site / "nvidia/cu13/lib").iterdir())
        assert cu13 == ["libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10"]
        assert sorted(p.name for p in (site / "nvidia/cudnn/lib").iterdir()) == sorted(keep)
        assert not list(site.glob("nvidia/*/include")) and not list(site.glob("nvidia/**/*.a"))
        capi = site / "onnxruntime" / "capi"
        assert (capi / "libonnxruntime_providers_cuda.so").is_file()
        assert not list(capi.glob("libonnxruntime.so*")) and not (capi / "libonnxruntime_providers_tensorrt.so").exists()
        # Shell-less, as the CPU images: the base's Python and what it links, no package manager.
        assert not (root / "bin/sh").exists() and not (root / "usr/bin/apt-get").exists()
        assert list(root.glob("*lib/x86_64-linux-gnu/libz.so.1")), "cuDNN links zlib: copied from the base"
    finally:
        buildah("rm", container, check=False)


@pytest.mark.slow
@requires_image_tools
def test_without_a_driver_the_server_in_the_image_refuses_to_start_naming_the_library(cuda_image) -> None:
    _, manifest = cuda_image
    container = buildah("from", "--pull=never", manifest.image.local).stdout.strip()
    try:
        done = subprocess.run(["buildah", "run", "--isolation", "chroot", container, "--", "python3", "-m", "bentoml",
                               "serve", "/opt/mlpack/bento", "--host", "127.0.0.1", "--port", "39613"],
                              capture_output=True, text=True, timeout=300)
    finally:
        buildah("rm", container, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    refusal = [line for line in done.stderr.splitlines() if line.startswith("mlpack: not ready:")]
    assert refusal == [
        "mlpack: not ready: CUDAExecutionProvider did not load, so the model would run on CPUExecutionProvider: the "
        "NVIDIA driver's libcuda.so.1 is not visible here (a GPU host's driver reaches a container through the NVIDIA "
        "container toolkit: docker run --gpus all, or a nvidia.com/gpu resource); set MLPACK_ALLOW_CPU=1 (mlpack serve "
        "--allow-cpu) to serve on the CPU on purpose"]


@pytest.mark.slow
@requires_image_tools
def test_told_to_the_image_serves_on_the_cpu_and_answers_as_the_float_model(cuda_image) -> None:
    _, manifest = cuda_image
    _, validation = demo_model()
    with np.load(validation) as data:
        rows, labels = data["pixels"][-16:], data["labels"][-16:]  # held out: the gate calibrates on the first rows
    container = buildah("from", "--pull=never", manifest.image.local).stdout.strip()
    try:
        done = subprocess.run(["buildah", "run", "--isolation", "chroot", "--env", "MLPACK_ALLOW_CPU=1", container,
                               "--", "python3", "-c", SERVED, json.dumps(rows.tolist())],
                              capture_output=True, text=True, timeout=300)
    finally:
        buildah("rm", container, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["provider"] == "CPUExecutionProvider"
    source, _ = demo_model()
    float_labels = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(
        ["label"], {"pixels": rows.astype(np.float32)})[0]
    assert answer["label"] == float_labels.tolist()
    assert np.mean(np.array(answer["label"]) == labels) >= 0.9
    assert "mlpack: serving on CPUExecutionProvider on purpose (MLPACK_ALLOW_CPU=1)" in done.stderr


def test_the_bento_declares_the_same_cuda_wheels_so_its_own_containerize_gets_them_too(demo_artifact) -> None:
    result = demo_artifact("cuda-gpu")
    declared = (result.path / "bento" / "env" / "python" / "requirements.txt").read_text().split()
    assert result.manifest.requirements.cuda and set(result.manifest.requirements.cuda) <= set(declared)
    assert f"onnxruntime-gpu=={GPU.runtime.version}" in declared
    assert not demo_artifact("x86-cpu").manifest.requirements.cuda
