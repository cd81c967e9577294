"""mixed-int8: the nodes an int8 recipe quantized, ranked by their measured effect on the output,
and the fewest of them kept float until the gate passes; all of them float is the float model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mlpack.model.info import inspect_model
from mlpack.optimize import GateSettings
from mlpack.optimize.data import EvalData
from mlpack.optimize.gate import compare
from mlpack.optimize.measure import outputs, session
from mlpack.optimize.passes import STATIC_INT8_OPS, dynamic_int8, static_int8, static_int8_nodes
from mlpack.optimize.sensitivity import quantized_nodes
from mlpack.optimize.variants.mixed_int8 import fewest
from mlpack.targets import load_target

from .models import chain_images, conv_chain, pyramid_cnn
from .optimize_models import optimize, with_variants


@pytest.mark.parametrize("opset", [12, 17])
@pytest.mark.parametrize("recipe", ["static", "dynamic"])
def test_every_quantized_node_kept_float_reproduces_the_float_model_exactly(tmp_path: Path, recipe: str,
                                                                            opset: int) -> None:
    model = pyramid_cnn(tmp_path / "pyramid.onnx", opset=opset)  # opset 12: static converts to 13 first
    images = np.random.default_rng(0).random((12, 3, 64, 96)).astype(np.float32)
    calibration, held_out = EvalData({"x": images[:4]}, None, "t", False), EvalData({"x": images[4:]}, None, "t", False)

    def make(dst: Path, exclude=()) -> Path:
        if recipe == "static":
            return static_int8(model, dst, calibration, exclude=exclude)
        return dynamic_int8(model, dst, exclude=exclude)

    float_graph = onnx.load(str(model))
    units = quantized_nodes(float_graph, onnx.load(str(make(tmp_path / "q.onnx"))))
    target = load_target("x86-cpu")
    reference = outputs(session(model, target), held_out)
    every = outputs(session(make(tmp_path / "all.onnx", units), target), held_out)
    assert all(np.array_equal(a, b) for a, b in zip(reference, every))  # bit for bit
    assert compare(reference, every, ["features"], GateSettings(min_cosine_min=1.0)).passed
    if recipe == "static":
        # Static int8 rounds a tensor only at a layer with weights, as its input or its output:
        # the Concat and Resize between layers get no Q/DQ pair of their own.
        quantized = onnx.load(str(tmp_path / "q.onnx")).graph.node
        op_of = {out: node.op_type for node in quantized for out in node.output}
        q_input = {node.output[0]: node.input[0] for node in quantized if node.op_type == "QuantizeLinear"}
        pairs = [(q_input.get(node.input[0]), node.output[0]) for node in quantized if node.op_type == "DequantizeLinear"]
        at_layer = [op_of.get(rounded) in STATIC_INT8_OPS
                    or any(out in node.input and node.op_type in STATIC_INT8_OPS for node in quantized)
                    for rounded, out in pairs]
        assert pairs and all(at_layer)
        assert {"Concat", "Resize"} <= {node.op_type for node in float_graph.graph.node}


def test_static_int8_runs_a_relu_and_maxpool_after_a_layer_in_int8_but_adds_no_rounding_elsewhere(
        tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = lambda name, x, y: helper.make_node("Conv", [x, f"{name}.w"], [y], name=name, pads=[1, 1, 1, 1])  # noqa: E731
    nodes = [conv("conv1", "x", "c1"), helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             conv("conv2", "p1", "c2"), helper.make_node("Add", ["c2", "p1"], ["sum"], name="add"),
             helper.make_node("Relu", ["sum"], ["y"], name="relu_after_add")]
    weights = [numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32), f"conv{i}.w")
               for i in (1, 2)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 4, 4])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))

    assert static_int8_nodes(model) == ["conv1", "relu1", "pool1", "conv2"]  # not the Relu after the Add
    images = EvalData({"x": rng.random((8, 4, 8, 8)).astype(np.float32)}, None, "t", False)
    quantized = onnx.load(str(static_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", images))).graph.node
    made_by = {out: node for node in quantized for out in node.output}
    pool = next(node for node in quantized if node.op_type == "MaxPool")
    # int8 in and out (DQ -> MaxPool -> Q, which onnxruntime runs on int8): no float hop between the layers
    assert made_by[pool.input[0]].op_type == "DequantizeLinear"
    assert {node.op_type for node in quantized if pool.output[0] in node.input} == {"QuantizeLinear"}
    assert made_by[next(n for n in quantized if n.name == "add").input[0]].op_type == "DequantizeLinear"
    assert made_by[next(n for n in quantized if n.name == "relu_after_add").input[0]].op_type == "Add"


def test_mixed_keeps_the_fewest_nodes_float_ranked_by_their_measured_effect(tmp_path: Path) -> None:
    model = conv_chain(tmp_path / "chain.onnx", outliers=(1, 3, 5))
    target = with_variants("arm-edge", "static-int8", "mixed-int8")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=chain_images(tmp_path / "d.npz"))
    assert not next(c for c in result.candidates if c.name == "static-int8").passed
    # Each broken layer, quantized alone, wrecks the output; the others barely move it.
    effects = dict(result.sensitive_layers)
    assert {name for name, _ in result.sensitive_layers[:3]} == {"conv1", "conv3", "conv5"}
    assert min(effects[f"conv{i}"] for i in (1, 3, 5)) > 10 * max(effects[f"conv{i}"] for i in (2, 4, 6))
    mixed = next(c for c in result.candidates if c.name == "mixed-int8")
    # 1, 2 fail; 4 passes; the bisection finds that 3 are enough: exactly the broken ones.
    assert mixed.passed and "but the 3 of its" in mixed.recipe
    assert all(f"conv{i}" in mixed.recipe for i in (1, 3, 5))
    assert mixed.size_bytes < result.candidates[0].size_bytes
    assert [p.name for p in (tmp_path / "work").glob("mixed-int8-*.onnx")] == [mixed.path.name]  # trials removed


@pytest.mark.parametrize(("first_passing", "failed", "total", "found", "tried"), [
    (3, 0, 20, 3, [1, 2, 4, 3]),           # doubling, then bisection
    (19, 0, 20, 19, [1, 2, 4, 8, 16, 19, 17, 18]),  # the last count below every-node-float is tried too
    (20, 0, 20, None, [1, 2, 4, 8, 16, 19]),  # only all float passes: that is the float model
    (7, 5, 20, 7, [10, 7, 6]),             # on from a count known to fail (the screen's, gated in full)
    (15, 12, 20, 15, [19, 15, 13, 14]),    # doubling would pass the end: the last count below it instead
    (20, 19, 20, None, []),                # nothing left between a failed count and all float
])
def test_the_search_doubles_then_bisects_and_never_tries_all_float(first_passing: int, failed: int, total: int,
                                                                   found: int | None, tried: list[int]) -> None:
    calls: list[int] = []

    def passes(keep: int) -> bool:
        calls.append(keep)
        return keep >= first_passing

    assert fewest(passes, failed, total) == found
    assert calls == tried


def test_static_ranges_are_calibrated_once_and_read_back_for_other_exclusions(tmp_path: Path) -> None:
    model = pyramid_cnn(tmp_path / "pyramid.onnx")
    rng = np.random.default_rng(0)
    first = EvalData({"x": rng.random((4, 3, 64, 96)).astype(np.float32)}, None, "t", False)
    other = EvalData({"x": 5 * rng.random((4, 3, 64, 96)).astype(np.float32)}, None, "t", False)
    ranges = tmp_path / "ranges.json"
    static_int8(model, tmp_path / "a.onnx", first, ranges=ranges)
    exclude = quantized_nodes(onnx.load(str(model)), onnx.load(str(tmp_path / "a.onnx")))[:1]
    cached = onnx.load(str(static_int8(model, tmp_path / "b.onnx", other, exclude=exclude, ranges=ranges)))
    fresh = onnx.load(str(static_int8(model, tmp_path / "c.onnx", first, exclude=exclude)))
    # The second call read the first call's ranges: the model is the one those rows give, not `other`'s.
    assert cached.graph.SerializeToString() == fresh.graph.SerializeToString()
    recalibrated = onnx.load(str(static_int8(model, tmp_path / "d.onnx", other, exclude=exclude)))
    assert recalibrated.graph.SerializeToString() != fresh.graph.SerializeToString()
