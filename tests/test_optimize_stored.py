"""stored-int8: weights stored in int8, one scale per output channel, widened to float32 when
onnxruntime opens the model. The file has int8's size; the session runs float's own graph.
The weights whose rounding alone moves the output most stay float, as few as the gate allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from mlpack.model.files import model_bytes
from mlpack.model.info import inspect_model
from mlpack.optimize.measure import graph_at_load
from mlpack.optimize.passes import stored_int8, stored_int8_weights

from .models import conv_chain
from .optimize_models import embedding_model, optimize, two_layer_data, two_layer_model, with_variants


def _as_opened(path: Path, tmp_path: Path) -> onnx.ModelProto:
    """The graph an onnxruntime session runs, as it saves it after its basic (portable) optimizations."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "opened.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "opened.onnx"))


def test_the_file_is_int8_sized_and_the_session_runs_floats_own_graph(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    stored = stored_int8(model, tmp_path / "stored.onnx")
    assert model_bytes(stored) < 0.3 * model_bytes(model)
    assert {t.data_type for t in onnx.load(str(stored)).graph.initializer} >= {onnx.TensorProto.INT8}

    opened = _as_opened(stored, tmp_path)
    # The widening ran once, at load: what is left per request is float's own three ops on float weights.
    assert [n.op_type for n in opened.graph.node] == ["MatMul", "Relu", "MatMul"]
    weights = {t.name: numpy_helper.to_array(t) for t in opened.graph.initializer}
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    # Each is the original rounded to 255 steps of its column's largest magnitude, and no further off.
    original = numpy_helper.to_array(next(t for t in onnx.load(str(model)).graph.initializer if t.name == "W2"))
    step = np.abs(original).max(axis=0) / 127
    assert np.all(np.abs(weights["W2"] - original) <= step / 2 + 1e-7)
    assert not np.array_equal(weights["W2"], original)


def test_convolution_filters_get_one_scale_per_output_channel(tmp_path: Path) -> None:
    model = conv_chain(tmp_path / "c.onnx")
    found = stored_int8_weights(onnx.load(str(model)))
    convs = [n.input[1] for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"]
    assert convs and all(found[w] == 0 for w in convs if w in found) and set(found) & set(convs)
    stored = onnx.load(str(stored_int8(model, tmp_path / "s.onnx")))
    scales = {t.name: list(t.dims) for t in stored.graph.initializer if t.name.endswith("_scale")}
    for weight in set(found) & set(convs):
        assert scales[f"{weight}_scale"][0] > 1 and set(scales[f"{weight}_scale"][1:]) == {1}


def test_the_weight_whose_rounding_breaks_the_output_stays_float_and_the_rest_is_stored_in_int8(tmp_path: Path) -> None:
    # W2 has a huge weight on a hidden unit that is always 0: float ignores it; rounded per
    # column to its scale, every real weight of W2 becomes 0.
    model = two_layer_model(tmp_path / "m.onnx", outliers=("second",))
    target = with_variants("x86-cpu", "stored-int8")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=two_layer_data(tmp_path / "d.npz"))
    stored = next(c for c in result.candidates if c.name == "stored-int8")
    assert stored.passed and stored.runs_as == "float"  # its session, once loaded, runs float's graph: checked
    assert "1 of 2 weight tensors stored in int8" in stored.recipe and "W2 (" in stored.recipe  # found by measurement
    initializers = {t.name: t.data_type for t in onnx.load(str(stored.path)).graph.initializer}
    assert initializers["W2"] == onnx.TensorProto.FLOAT and initializers["W1_int8"] == onnx.TensorProto.INT8
    assert "W1" not in initializers
    assert stored.size_bytes < 0.55 * result.candidates[0].size_bytes  # W1, two thirds of the weights, in a quarter
    assert sorted(p.name for p in (tmp_path / "work").glob("stored-int8*")) == [stored.path.name]  # the rest removed


def test_an_embedding_table_is_stored_with_one_scale_per_row(tmp_path: Path) -> None:
    model = embedding_model(tmp_path / "e.onnx")
    assert stored_int8_weights(onnx.load(str(model))) == {"table": 0, "W": 1}
    stored = stored_int8(model, tmp_path / "s.onnx")
    scales = {t.name: list(t.dims) for t in onnx.load(str(stored)).graph.initializer if t.name.endswith("_scale")}
    assert scales == {"table_scale": [2048, 1], "W_scale": [1, 32]}
    assert model_bytes(stored) < 0.3 * model_bytes(model)
    assert [n.op_type for n in _as_opened(stored, tmp_path).graph.node] == ["Gather", "ReduceMean", "MatMul"]


def test_the_load_check_tells_floats_graph_from_one_that_still_widens_on_every_request(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    stored = stored_int8(model, tmp_path / "stored.onnx")
    assert graph_at_load(stored, tmp_path) == graph_at_load(model, tmp_path)
    # The same int8 weights behind DequantizeLinear, which onnxruntime keeps for its int8 kernels.
    dq = onnx.load(str(stored))
    for tensor in dq.graph.initializer:
        if tensor.name.endswith("_scale"):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).ravel(), tensor.name))
    nodes = [n for n in dq.graph.node if n.op_type != "Cast"]
    for node in nodes:
        if node.op_type == "Mul" and node.input[0].endswith("_widened"):
            weight = node.output[0]
            node.CopyFrom(helper.make_node("DequantizeLinear", [f"{weight}_int8", f"{weight}_scale"], [weight], axis=1))
    del dq.graph.node[:]
    dq.graph.node.extend(nodes)
    onnx.save(dq, str(tmp_path / "dq.onnx"))
    at_load = graph_at_load(tmp_path / "dq.onnx", tmp_path)
    assert at_load != graph_at_load(model, tmp_path)
    # Still int8 weights once loaded, with an op that widens or computes on them at every request.
    assert {op for op, _, _ in at_load} & {"DequantizeLinear", "MatMulNBits"}
    assert any(dtype == str(onnx.TensorProto.INT8) for dtype, _, _ in at_load)
    assert not list(tmp_path.glob("*at-load*"))  # what the check saved is gone


def test_a_target_that_disables_graph_optimizations_gets_no_float_speed_claim(tmp_path: Path) -> None:
    target = with_variants("x86-cpu", "stored-int8")
    target = target.model_copy(update={"runtime": target.runtime.model_copy(update={"graph_optimization_level": "disable"})})
    model = two_layer_model(tmp_path / "m.onnx")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=two_layer_data(tmp_path / "d.npz"))
    stored = next(c for c in result.candidates if c.name == "stored-int8")
    assert stored.passed and stored.runs_as == ""  # its sessions widen the weights at every request
    assert "onnxruntime did not fold its widening at load" in stored.recipe
    assert stored.latency and "= float" not in result.table()  # timed as itself


def test_a_stored_int8_that_runs_floats_graph_is_not_timed_again_and_the_report_says_whose_latency_it_has(
        tmp_path: Path, monkeypatch) -> None:
    import mlpack.optimize.pipeline as pipeline

    opened: list[str] = []
    real = pipeline.session
    monkeypatch.setattr(pipeline, "session", lambda path, *a, **k: opened.append(Path(path).name) or real(path, *a, **k))
    model = two_layer_model(tmp_path / "m.onnx")
    result = optimize(inspect_model(model), with_variants("x86-cpu", "stored-int8"), tmp_path / "work",
                      data_path=two_layer_data(tmp_path / "d.npz"))
    stored, float_ = (next(c for c in result.candidates if c.name == name) for name in ("stored-int8", "float"))
    assert stored.runs_as == "float"
    # Only the others got a timing session; one of its own would hold float's weights once more.
    assert stored.path.name not in opened and "float.onnx" in " ".join(opened)
    assert stored.latency == float_.latency and set(stored.latency) == set(float_.latency)
    row = next(line for line in result.table().splitlines() if line.startswith("stored-int8"))
    assert "= float" in row
    assert ("stored-int8 was not timed: once onnxruntime has loaded it, its session runs float's own graph (checked "
            "when it was made), so its latency is float's, measured in the same run.") in result.notes
