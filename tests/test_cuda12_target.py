"""cuda12-gpu: hosts whose NVIDIA driver is too old for CUDA 13 get the last onnxruntime-gpu
built for CUDA 12, and adding that target was adding its file.

The build gates in onnxruntime-gpu 1.26.0 itself (a worker process of its own), checks that the
target's CUDA wheels are of the CUDA it was built for, and its image carries what that
release's CUDA provider links, cuDNN and cuFFT included (it links both).
"""

from __future__ import annotations

import pytest

from mlpack.build import BuildRequest, build
from mlpack.errors import InputError
from mlpack.render.facts import container_facts
from mlpack.image.native_libs import missing_libraries
from mlpack.pinned_runtime import for_target
from mlpack.pinned_runtime.environment import runtime_env
from mlpack.progress import Progress
from mlpack.render.context import RenderContext
from mlpack.targets import load_target, target_files
from .pyramid import heavy

CUDA12 = load_target("cuda12-gpu")


def test_adding_the_target_was_adding_its_file() -> None:
    assert target_files()["cuda12-gpu"].name == "cuda12-gpu.toml"
    assert (CUDA12.runtime.onnxruntime, CUDA12.runtime.version) == ("onnxruntime-gpu", "1.26.0")


@pytest.fixture(scope="module")
@heavy
def cuda12_demo(tmp_path_factory):
    return build(BuildRequest(target="cuda12-gpu", out=tmp_path_factory.mktemp("cuda12")), Progress(quiet=True))


def test_the_demo_is_gated_in_onnxruntime_gpu_1_26_and_pins_cuda_12_wheels(cuda12_demo) -> None:
    manifest = cuda12_demo.manifest
    assert manifest.optimization.gated_with.startswith("onnxruntime-gpu 1.26.0 (the runtime the artifact ships, "
                                                       "in a worker process of its own)")
    assert for_target(CUDA12).cuda_version == CUDA12.cuda.version == "12.8"
    server = manifest.requirements.server
    assert "onnxruntime-gpu==1.26.0" in server and "nvidia-cudnn-cu12==9.14.0.64" in server
    assert "nvidia-cufft-cu12==11.3.3.83" in server
    assert not [r for r in server if "cu13" in r or r.startswith(("nvidia-cuda-runtime==", "nvidia-cublas=="))]


def test_its_wheels_provide_every_library_the_cuda_provider_links(cuda12_demo) -> None:
    """What onnxruntime-gpu 1.26.0's CUDA provider needs beyond glibc and the driver is exactly
    what the target's wheels hold (read from the provider's ELF; the wheels' libraries by name)."""
    cuda = container_facts(RenderContext.from_manifest(cuda12_demo.manifest)).cuda
    site = runtime_env("onnxruntime-gpu", "1.26.0")  # the release alone, without its CUDA wheels
    needed = missing_libraries(site, cuda.check[:1], [], cuda.from_host)[cuda.check[0]]
    assert sorted(needed) == ["libcublas.so.12", "libcublasLt.so.12", "libcudart.so.12", "libcudnn.so.9",
                              "libcufft.so.11", "libcurand.so.10"]
    assert "libcudnn.so.9" in cuda.cudnn_keep  # linked, so kept whatever the model's operators


def test_wheels_of_another_cuda_than_the_release_was_built_for_stop_the_build(tmp_path) -> None:
    from mlpack.build.run import check_cuda_version

    wrong = CUDA12.model_copy(update={"cuda": CUDA12.cuda.model_copy(update={"version": "13.0"})})
    with pytest.raises(InputError) as caught:
        check_cuda_version(wrong)
    assert caught.value.one_line().startswith(
        "target cuda12-gpu ships CUDA 13.0 wheels, but onnxruntime-gpu 1.26.0 is built for CUDA 12.8")
