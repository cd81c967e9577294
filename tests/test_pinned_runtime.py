"""The gate runs on the runtime that ships: what the pinned onnxruntime reads, the one safe
rewrite (a lower IR version), and a cuda-gpu build whose model is loaded, gated and answered
by onnxruntime-gpu at the version the target pins (its CPU provider: this host has no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlpack.build import BuildRequest, build
from mlpack.errors import InputError
from mlpack.pinned_runtime import for_target, host_runtime, runtime_message
from mlpack.pinned_runtime.compat import Limits, fit, min_ir_version
from mlpack.pinned_runtime.environment import runtime_env
from mlpack.progress import Progress
from mlpack.targets import load_target

from .models import linear_model, linear_reference

GPU = load_target("cuda-gpu")
READS_13 = Limits("onnxruntime-gpu", "1.31.1", max_ir_version=13, max_opset=26)


def as_written_by_onnx_helper(path: Path, elem_type: int = TensorProto.FLOAT, opset: int = 17) -> Path:
    """y = x + 1 saved with onnx.helper's defaults: today's IR version (14 with onnx 1.23)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["c"], to=elem_type), helper.make_node("Cast", ["c"], ["y"], to=1)],
        "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


# -- what a release reads, and the rewrite ----------------------------------------------------

def test_the_pinned_release_says_what_it_reads_by_loading_tiny_models() -> None:
    runtime = for_target(GPU)
    assert (runtime.package, runtime.version) == ("onnxruntime-gpu", GPU.runtime.version)
    assert not runtime.local, "this host imports onnxruntime, not onnxruntime-gpu: the gate needs a worker"
    assert runtime.limits.max_ir_version == 13  # 1.31.1 refuses IR 14 (what onnx 1.23 writes)
    assert runtime.cuda_version == GPU.cuda.version
    assert "Unsupported model IR version: 14" in runtime.probe(_probe(14))


def _probe(ir: int) -> bytes:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "p",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = ir
    return model.SerializeToString()


def test_a_newer_ir_version_is_lowered_when_the_model_uses_nothing_newer(tmp_path: Path) -> None:
    model = onnx.load(str(as_written_by_onnx_helper(tmp_path / "m.onnx")))
    assert model.ir_version > 13
    fitted = fit(model, READS_13)
    assert fitted.fits and fitted.ir_version == 13
    assert fitted.rewrite.startswith(f"IR version {model.ir_version} -> 13")


NEWER_TYPES = [(name, ir) for name, ir in (("FLOAT6E2M3", 14), ("INT2", 13), ("FLOAT4E2M1", 11), ("INT4", 10))
               if hasattr(TensorProto, name)]  # the types this onnx knows


@pytest.mark.parametrize(("name", "needs"), NEWER_TYPES)
def test_a_data_type_newer_than_the_runtime_keeps_the_ir_version_it_needs(tmp_path: Path, name: str,
                                                                           needs: int) -> None:
    model = onnx.load(str(as_written_by_onnx_helper(tmp_path / "m.onnx", getattr(TensorProto, name))))
    assert min_ir_version(model) == (needs, f"data type {name}")
    fitted = fit(model, Limits("ort", "x", max_ir_version=needs - 1, max_opset=26))
    assert not fitted.fits and f"needs at least {needs} (data type {name})" in fitted.problem


def test_an_opset_newer_than_the_runtime_is_refused_not_rewritten(tmp_path: Path) -> None:
    model = onnx.load(str(as_written_by_onnx_helper(tmp_path / "m.onnx", opset=27)))
    assert fit(model, READS_13).problem == "the model uses opset 27 and onnxruntime-gpu 1.31.1 reads opset 26 at most"


def test_onnxruntime_errors_read_without_source_paths_and_signatures() -> None:
    raw = ("[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/model.cc:256 "
           "onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&, const ModelOptions&) "
           "Unsupported model IR version: 14, max supported IR version: 13")
    assert runtime_message(raw) == "Unsupported model IR version: 14, max supported IR version: 13"


# -- a cuda-gpu build on this CPU host ----------------------------------------------------------

@pytest.mark.slow
def test_a_model_of_ir_version_14_builds_for_cuda_gpu_and_loads_in_the_pinned_runtime(tmp_path: Path) -> None:
    source = as_written_by_onnx_helper(tmp_path / "plus.onnx")
    assert onnx.load(str(source)).ir_version == 14
    result = build(BuildRequest(model=source, target="cuda-gpu", out=tmp_path / "out"), Progress(quiet=True))
    manifest = result.manifest
    assert manifest.model.ir_version == 13
    assert manifest.model.rewrites == [result.optimization.rewrites[0]]
    assert manifest.model.rewrites[0].startswith("IR version 14 -> 13: onnxruntime-gpu 1.31.1 reads 13 at most")
    assert manifest.optimization.gated_with.startswith("onnxruntime-gpu 1.31.1 (the runtime the artifact ships")
    # The shipped file itself loads and answers in onnxruntime-gpu==1.31.1, in its own process.
    shipped = result.path / manifest.model.file
    assert onnx.load(str(shipped)).ir_version == 13
    session = for_target(GPU).open(shipped, GPU.runtime.session_settings())
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x)


def test_a_model_the_pinned_runtime_cannot_read_stops_the_build_in_one_line_before_anything_is_written(
        tmp_path: Path) -> None:
    source = as_written_by_onnx_helper(tmp_path / "new.onnx", opset=27)
    with pytest.raises(InputError) as caught:
        build(BuildRequest(model=source, target="cuda-gpu", out=tmp_path / "out"), Progress(quiet=True))
    assert caught.value.one_line() == (
        "cuda-gpu ships onnxruntime-gpu 1.31.1, which cannot read this model: the model uses opset 27 and "
        "onnxruntime-gpu 1.31.1 reads opset 26 at most; export the model for ONNX IR version 13 and opset 26 at "
        "most (e.g. an older onnx or exporter), or pick another target")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_same_model_builds_for_x86_cpu_in_this_process_whose_runtime_reads_it(tmp_path: Path) -> None:
    source = as_written_by_onnx_helper(tmp_path / "plus.onnx")
    result = build(BuildRequest(model=source, target="x86-cpu", out=tmp_path / "out"), Progress(quiet=True))
    assert result.manifest.model.ir_version == 14 and result.manifest.model.rewrites == []
    assert result.manifest.optimization.gated_with.startswith(
        f"{' '.join(host_runtime())} (the runtime the artifact ships, in mlpack's process)")


SERVE_ON_CPU = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, onnxruntime
from mlpack_runtime.served import ServedModel
model = ServedModel(sys.argv[1])
x = np.arange(12, dtype=np.float32).reshape(3, 4)
print(json.dumps({"runtime": onnxruntime.__version__, "provider": model.provider,
                  "y": model.infer({"x": x})[0].tolist()}))
"""


@pytest.mark.slow
def test_a_cuda_gpu_bento_answers_under_the_pinned_onnxruntime_gpu_on_the_cpu_when_allowed(tmp_path: Path) -> None:
    source = linear_model(tmp_path / "linear.onnx")
    result = build(BuildRequest(model=source, target="cuda-gpu", out=tmp_path / "out"), Progress(quiet=True))
    app = result.path / "bento" / "src"
    env = {**os.environ, "PYTHONPATH": str(runtime_env("onnxruntime-gpu", GPU.runtime.version)),
           "MLPACK_AGENT_DISABLED": "1"}
    refused = subprocess.run([sys.executable, "-c", SERVE_ON_CPU, str(app)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0
    assert "ProviderUnavailable: CUDAExecutionProvider did not load, so the model would run on " \
           "CPUExecutionProvider: libonnxruntime_providers_cuda.so needs libcublasLt.so.13" in refused.stderr
    served = subprocess.run([sys.executable, "-c", SERVE_ON_CPU, str(app)], env={**env, "MLPACK_ALLOW_CPU": "1"},
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr
    answer = json.loads(served.stdout)
    assert answer["runtime"] == GPU.runtime.version and answer["provider"] == "CPUExecutionProvider"
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(answer["y"], linear_reference(source, x), rtol=1e-2, atol=1e-2)  # fp16 weights
    assert "mlpack: serving on CPUExecutionProvider on purpose (MLPACK_ALLOW_CPU=1)" in served.stderr


def test_inspect_says_whether_the_targets_runtime_loads_the_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlpack.cli import app

    source = as_written_by_onnx_helper(tmp_path / "plus.onnx")
    gpu = CliRunner().invoke(app, ["inspect", str(source), "-t", "cuda-gpu"])
    assert gpu.exit_code == 0, gpu.output
    assert gpu.stdout.splitlines()[-1] == (
        "  runtime cuda-gpu ships onnxruntime-gpu 1.31.1 (reads IR 13, opset 26 at most): it loads this model once "
        "the build rewrites it (IR version 14 -> 13: onnxruntime-gpu 1.31.1 reads 13 at most, and the model uses "
        "nothing newer (it needs IR 8, for its opsets))")
    newer = CliRunner().invoke(app, ["inspect", str(as_written_by_onnx_helper(tmp_path / "new.onnx", opset=27)),
                                     "-t", "cuda-gpu"])
    assert newer.exit_code == 2
    assert newer.stderr.startswith("error: cuda-gpu ships onnxruntime-gpu 1.31.1, which cannot read this model: "
                                   "the model uses opset 27")
