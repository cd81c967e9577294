"""Small models the optimizer tests make with onnx.helper, each built to break (or not)
one part of the optimizer, and the shortcuts those tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlpack.optimize import OptimizationResult, make_candidates, time_and_pick
from mlpack.targets import load_target


def optimize(info, target, work_dir: Path, **options) -> OptimizationResult:
    """optimize_model with a short timing budget: these tests check what is made, gated and picked."""
    return time_and_pick(make_candidates(info, target, work_dir, **options), budget_s=0.2)


def _save(nodes, inputs, outputs, inits, path: Path, opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def two_layer_model(path: Path, *, outliers: tuple[str, ...] = (), seed: int = 0) -> Path:
    """x [batch, 64] -> MatMul "first" -> Relu -> MatMul "second" -> y [batch, 32], an embedding.

    A layer named in `outliers` gets a huge weight in every output column on an input that
    is always 0 (feature 0 of x; hidden unit 0, whose weights are zero): float ignores it,
    but int8 per-channel scales follow the outlier and round every real weight in the
    column to zero. That layer is what breaks quantization; the outlier is too large for
    activation smoothing to move into range.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((64, 256)).astype(np.float32) * 0.1
    w2 = rng.standard_normal((256, 32)).astype(np.float32) * 0.1
    w1[:, 0] = 0.0  # hidden unit 0 is always 0
    if "first" in outliers:
        w1[0, :] = 1e7
        w1[1:, 0] = 0.0
    if "second" in outliers:
        w2[0, :] = 1e7
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="second"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], {"W1": w1, "W2": w2}, path)


def two_layer_data(path: Path, rows: int = 96) -> Path:
    """Real-looking inputs whose feature 0 is always 0, so outlier weights never matter in float."""
    x = np.random.default_rng(1).standard_normal((rows, 64)).astype(np.float32)
    x[:, 0] = 0.0
    np.savez(path, x=x)
    return path


def conv_model(path: Path) -> Path:
    """A tiny CNN: image [batch, 3, 16, 16] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> logits."""
    rng = np.random.default_rng(2)
    inits = {
        "K": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "B": rng.standard_normal(8).astype(np.float32) * 0.1,
        "W": rng.standard_normal((8, 10)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "K", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "W"], ["logits"], name="head"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits, path)


def two_conv_model(path: Path) -> Path:
    """image [batch, 3, 16, 16] -> Conv "conv1" -> Relu -> Conv "conv2" -> GlobalAveragePool -> features [batch, 16].

    conv1 has a huge weight on input channel 0, which the data keeps at 0: float ignores
    it, int8 per-channel scales follow it and zero every real weight of conv1.
    """
    rng = np.random.default_rng(4)
    k1 = rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3
    k1[:, 0, 1, 1] = 1e7
    inits = {"K1": k1, "K2": rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.2,
             "shape": np.array([0, 16], np.int64)}
    nodes = [
        helper.make_node("Conv", ["image", "K1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "K2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "shape"], ["features"], name="flatten"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                 [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])], inits, path)


def embedding_model(path: Path, rows: int = 2048) -> Path:
    """ids [batch, seq] -> Gather(table `rows` x 64) -> ReduceMean over seq -> MatMul -> y [batch, 32]."""
    rng = np.random.default_rng(3)
    inits = {
        "table": rng.standard_normal((rows, 64)).astype(np.float32),
        "axes": np.array([1], np.int64),
        "W": rng.standard_normal((64, 32)).astype(np.float32) * 0.2,
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("ReduceMean", ["e", "axes"], ["m"], name="pool", keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["y"], name="proj"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], inits, path, opset=18)


def with_variants(name: str, *variants: str):
    """A target as shipped, with only the given variants: targets are data."""
    target = load_target(name)
    return target.model_copy(update={"optimize": target.optimize.model_copy(update={"variants": list(variants)})})
