"""The optimizer gates and times each variant in a session made by the serving runtime's own
code (mlpack_runtime.config.open_session) with the settings runtime.json carries, in the
onnxruntime release the target pins, and onnxruntime's native log never reaches the terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlpack.steps.app import runtime_json
from mlpack.model.info import Signature, TensorSpec
from mlpack.optimize.measure import session
from mlpack.pinned_runtime import host_runtime, pinned_version
from mlpack.runtime.config import RuntimeConfig
from mlpack.targets import load_target

from .models import linear_model, residual_layer_norm_model
from .shape_models import unloadable_model


def served_settings(target_name: str) -> dict:
    """The `session` settings of the runtime.json a build writes for the target (app.runtime_json
    reads only these attributes of its render context)."""
    model = SimpleNamespace(file="model.onnx", sha256="a" * 64, variant="float", signature=Signature(
        inputs=[TensorSpec(name="x", dtype="float32", shape=["batch", 4])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=["batch", 3])]))
    ctx = SimpleNamespace(name="m", target=load_target(target_name), model=model, mlpack_version="0",
                          processing=None, drift=None)
    return json.loads(runtime_json(ctx))["session"]


def _options(sess) -> dict:
    o = sess.get_session_options()
    return {"graph": str(o.graph_optimization_level), "intra": o.intra_op_num_threads, "inter": o.inter_op_num_threads,
            "arena": o.enable_cpu_mem_arena, "log": o.log_severity_level}


@pytest.mark.parametrize("target_name", ["x86-cpu", "aws-lambda", "arm-edge", "cuda-gpu"])
def test_the_gate_and_the_timer_use_the_session_serving_opens(tmp_path: Path, target_name: str) -> None:
    model = linear_model(tmp_path / "model.onnx")
    served = RuntimeConfig("model.onnx", [], [], served_settings(target_name), {}).open_session(tmp_path)
    target = load_target(target_name)
    gated = session(model, target)
    assert _options(gated) == _options(served)
    assert gated.get_providers() == ["CPUExecutionProvider"]  # the gate runs on this host's CPU
    # In the release the artifact pins: in mlpack's process when it is the one mlpack imports
    # (the CPU targets), else in a worker of its own (cuda-gpu: onnxruntime-gpu on its CPU provider).
    pinned = (target.runtime.onnxruntime, pinned_version(target))
    assert (pinned == host_runtime()) == (not hasattr(gated, "run_timed"))
    if target_name == "cuda-gpu":
        assert pinned == ("onnxruntime-gpu", target.runtime.version) != host_runtime()


@pytest.mark.parametrize("target_name, as_recipe, ops", [
    ("x86-cpu", False, ["Add", "LayerNormalization"]),
    ("aws-lambda", False, ["Add", "LayerNormalization"]),
    ("arm-edge", False, ["SkipLayerNormalization"]),  # not measured on an aarch64 CPU: every fusion on
    ("x86-cpu", True, ["SkipLayerNormalization"]),  # a benchmark's reference recipe, as its user opens it
])
def test_the_fusions_a_target_disables_are_left_out_of_the_served_and_the_measured_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target_name: str, as_recipe: bool, ops: list[str]) -> None:
    """The x86 targets leave Add + LayerNormalization unfused (onnxruntime's SkipLayerNormalization
    kernel is the slower here, docs/optimization.md). The graph onnxruntime runs is read back, so a
    misspelt optimizer name, which onnxruntime ignores without a word, fails here."""
    import onnx

    from mlpack.runtime import config

    written = tmp_path / "as-run.onnx"
    plain = config.session_options

    def writing(settings):
        options = plain(settings)
        options.optimized_model_filepath = str(written)
        return options

    monkeypatch.setattr(config, "session_options", writing)
    model = residual_layer_norm_model(tmp_path / "model.onnx")
    if as_recipe:
        session(model, load_target(target_name), as_recipe=True)
    else:
        RuntimeConfig("model.onnx", [], [], served_settings(target_name), {}).open_session(tmp_path)
        served = [n.op_type for n in onnx.load(written).graph.node]
        written.unlink()
        session(model, load_target(target_name))  # the gate's and the timer's session: the same graph
        assert [n.op_type for n in onnx.load(written).graph.node] == served
    assert [n.op_type for n in onnx.load(written).graph.node] == ops


def test_the_timed_sessions_stop_spinning_after_each_run_and_the_served_one_is_left_as_onnxruntime_sets_it(
        tmp_path: Path) -> None:
    """Candidates are timed in turn: a session's threads left spinning after its run would take
    the cores of the next one's (measure.latencies). Serving runs one session: onnxruntime's default."""
    model = linear_model(tmp_path / "model.onnx")
    served = RuntimeConfig("model.onnx", [], [], served_settings("x86-cpu"), {}).open_session(tmp_path)
    key = "session.force_spinning_stop"
    with pytest.raises(RuntimeError, match="does not have configuration with key"):  # unset: the default
        served.get_session_options().get_session_config_entry(key)
    assert "force_spinning_stop" not in served_settings("x86-cpu")
    for as_recipe in (False, True):
        timed = session(model, load_target("x86-cpu"), as_recipe=as_recipe)
        assert timed.get_session_options().get_session_config_entry(key) == "1"


def test_x86_sessions_flush_denormals_served_gated_and_timed_and_a_recipe_keeps_onnxruntimes_default(
        tmp_path: Path) -> None:
    """x86-cpu's `denormal_as_zero`: the served session and the optimizer's have it, so what is
    gated and timed is what is served; a reference recipe is opened as its user would open it."""
    model = linear_model(tmp_path / "model.onnx")
    key = "session.set_denormal_as_zero"
    served = RuntimeConfig("model.onnx", [], [], served_settings("x86-cpu"), {}).open_session(tmp_path)
    assert served.get_session_options().get_session_config_entry(key) == "1"
    assert session(model, load_target("x86-cpu")).get_session_options().get_session_config_entry(key) == "1"
    for options in (session(model, load_target("x86-cpu"), as_recipe=True).get_session_options(),
                    session(model, load_target("arm-edge")).get_session_options()):
        with pytest.raises(RuntimeError, match="does not have configuration with key"):
            options.get_session_config_entry(key)


def test_the_target_settings_reach_the_session() -> None:
    from mlpack.runtime.config import session_options

    lambda_like = session_options({"graph_optimization_level": "extended", "intra_op_threads": 1,
                                   "inter_op_threads": 1, "enable_cpu_mem_arena": False})
    assert (lambda_like.intra_op_num_threads, lambda_like.inter_op_num_threads) == (1, 1)
    assert not lambda_like.enable_cpu_mem_arena
    assert str(lambda_like.graph_optimization_level).endswith("ORT_ENABLE_EXTENDED")
    assert str(session_options({}).graph_optimization_level).endswith("ORT_ENABLE_ALL")


UNLOADABLE = """
import sys
from pathlib import Path
from mlpack.errors import MlpackError
from mlpack.model.info import inspect_model
from mlpack.runtime.config import RuntimeConfig
path = Path(sys.argv[1])
try:
    inspect_model(path)
except MlpackError as exc:
    print(exc.one_line())
try:
    RuntimeConfig(path.name, [], [], {"execution_providers": ["CPUExecutionProvider"]}, {}).open_session(path.parent)
except Exception as exc:
    print("serving:", str(exc).splitlines()[0][:60])
"""


def test_a_model_onnxruntime_cannot_load_is_one_line_without_onnxruntimes_own_log(tmp_path: Path) -> None:
    # onnxruntime has no Add kernel for strings and fails at load, after logging the failure
    # natively (coloured, on stderr) unless its severity is raised.
    unloadable_model(tmp_path / "text.onnx")
    done = subprocess.run([sys.executable, "-c", UNLOADABLE, str(tmp_path / "text.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("onnxruntime cannot load text.onnx: [ONNXRuntimeError]")
    assert "serving: [ONNXRuntimeError]" in done.stdout
    assert "onnxruntime" not in done.stderr and "\x1b[" not in done.stderr
