"""Structured pruning (`pruned`, `pruned-int8`): whole feed-forward channels and conv filters
removed, chosen by their measured effect on the calibration rows, the next layer refit.

The models are made here with onnx.helper. In each, half of every block's channels carry
little of the output (their next-layer weights are small), as in trained networks where
some channels matter far less than others; which half is not in any order the pruner could
guess without measuring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from mlpack.model.info import inspect_model
from mlpack.optimize.data import EvalData
from mlpack.optimize.structured import Pruner, find_blocks, layer_weights

from .optimize_models import _save, optimize, with_variants

D, H, SEQ = 32, 64, 6  # model width, feed-forward width, tokens


def _weak_half(rng: np.random.Generator, rows: int) -> np.ndarray:
    """A per-channel scale: 1 for a random half of the channels, 0.02 for the rest."""
    scale = np.full(rows, 0.02, np.float32)
    scale[rng.permutation(rows)[: rows // 2]] = 1.0
    return scale


def transformer_ffn_model(path: Path, blocks: int = 2) -> Path:
    """x [batch, seq, D] -> `blocks` residual feed-forward blocks, each
    x + (Gelu(x W1 + b1) W2 + b2) with Gelu in its exported Erf form -> y [batch, seq, D]."""
    rng = np.random.default_rng(7)
    nodes, inits, x = [], {"sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}, "x"
    for i in range(blocks):
        weights = {f"W1_{i}": rng.standard_normal((D, H)) / np.sqrt(D),
                   f"b1_{i}": rng.standard_normal(H) * 0.1,
                   f"W2_{i}": rng.standard_normal((H, D)) / np.sqrt(H) * _weak_half(rng, H)[:, None],
                   f"b2_{i}": rng.standard_normal(D) * 0.1}
        inits |= {name: value.astype(np.float32) for name, value in weights.items()}
        p = f"b{i}_"
        nodes += [
            helper.make_node("MatMul", [x, f"W1_{i}"], [p + "h"], name=p + "ffn_in"),
            helper.make_node("Add", [p + "h", f"b1_{i}"], [p + "hb"], name=p + "bias_in"),
            helper.make_node("Div", [p + "hb", "sqrt2"], [p + "d"], name=p + "div"),
            helper.make_node("Erf", [p + "d"], [p + "e"], name=p + "erf"),
            helper.make_node("Add", [p + "e", "one"], [p + "e1"], name=p + "add1"),
            helper.make_node("Mul", [p + "hb", p + "e1"], [p + "g"], name=p + "mul"),
            helper.make_node("Mul", [p + "g", "half"], [p + "gelu"], name=p + "half"),
            helper.make_node("MatMul", [p + "gelu", f"W2_{i}"], [p + "o"], name=p + "ffn_out"),
            helper.make_node("Add", [p + "o", f"b2_{i}"], [p + "ob"], name=p + "bias_out"),
            helper.make_node("Add", [x, p + "ob"], [p + "res"], name=p + "residual"),
        ]
        x = p + "res"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    return _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, D])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SEQ, D])], inits, path)


def cnn_model(path: Path) -> Path:
    """image [batch, 3, 16, 16] -> Conv(32) -> BatchNorm -> Relu -> Conv(32) -> Relu -> Conv(16)
    -> GlobalAveragePool -> Flatten -> MatMul -> logits [batch, 10]: two conv blocks."""
    rng = np.random.default_rng(8)
    inits = {
        "K1": rng.standard_normal((32, 3, 3, 3)).astype(np.float32) * 0.3,
        "B1": rng.standard_normal(32).astype(np.float32) * 0.1,
        "scale": (1 + 0.1 * rng.standard_normal(32)).astype(np.float32),
        "shift": (0.1 * rng.standard_normal(32)).astype(np.float32),
        "mean": (0.1 * rng.standard_normal(32)).astype(np.float32),
        "var": (1 + 0.1 * rng.random(32)).astype(np.float32),
        "K2": (rng.standard_normal((32, 32, 3, 3)) * 0.1 * _weak_half(rng, 32)[None, :, None, None]).astype(np.float32),
        "K3": (rng.standard_normal((16, 32, 3, 3)) * 0.1 * _weak_half(rng, 32)[None, :, None, None]).astype(np.float32),
        "W": rng.standard_normal((16, 10)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "K1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "K2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "K3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "W"], ["logits"], name="head"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits, path)


def _data(path: Path, name: str, shape: tuple[int, ...], rows: int = 96, seed: int = 1) -> Path:
    np.savez(path, **{name: np.random.default_rng(seed).standard_normal((rows, *shape)).astype(np.float32)})
    return path


def _weights(path: Path) -> dict[str, tuple[int, ...]]:
    model = onnx.load(str(path))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return {n.name: shapes[n.input[1]] for n in model.graph.node if n.op_type in ("MatMul", "Conv")}


def _pruned_at(ratios: list[float], *more: str):
    """x86-cpu with `pruned` (and `more` variants after it) trying only `ratios`."""
    target = with_variants("x86-cpu", "pruned", *more)
    return target.model_copy(update={"optimize": target.optimize.model_copy(
        update={"config": {"pruned": {"ratios": ratios}}})})


def test_a_transformer_loses_half_its_feed_forward_channels_and_still_passes_the_gate(tmp_path: Path) -> None:
    model = transformer_ffn_model(tmp_path / "ffn.onnx")
    data = _data(tmp_path / "x.npz", "x", (SEQ, D))
    result = optimize(inspect_model(model), _pruned_at([0.5], "pruned-int8"), tmp_path / "work", data_path=data)
    pruned = {c.name: c for c in result.candidates}["pruned"]
    assert pruned.passed, pruned.reason
    assert "50.0% of each block's channels removed" in pruned.recipe
    # Smaller dense matrices: every FFN is 64 -> 32 channels wide, half its MACs.
    shapes = _weights(pruned.path)
    assert shapes["b0_ffn_in"] == (D, H // 2) and shapes["b0_ffn_out"] == (H // 2, D)
    assert shapes["b1_ffn_in"] == (D, H // 2) and shapes["b1_ffn_out"] == (H // 2, D)
    assert layer_weights(onnx.load(str(pruned.path))) == layer_weights(onnx.load(str(model))) // 2
    assert pruned.size_bytes < 0.6 * result.candidates[0].size_bytes
    # pruned-int8 starts from that graph and is smaller still, gated the same way.
    int8 = {c.name: c for c in result.candidates}["pruned-int8"]
    assert int8.passed and int8.size_bytes < 0.65 * pruned.size_bytes


def test_a_cnn_loses_conv_filters_and_the_next_conv_its_input_channels(tmp_path: Path) -> None:
    model = cnn_model(tmp_path / "cnn.onnx")
    assert [(b.first, b.second) for b in find_blocks(onnx.load(str(model)))] == [("conv1", "conv2"),
                                                                              ("conv2", "conv3")]
    data = _data(tmp_path / "images.npz", "image", (3, 16, 16), rows=64)
    result = optimize(inspect_model(model), with_variants("x86-cpu", "pruned"), tmp_path / "work", data_path=data)
    pruned = {c.name: c for c in result.candidates}["pruned"]
    assert pruned.passed, pruned.reason
    # The float passes fold the BatchNormalization into conv1 first; pruning keeps 16 of 32 filters.
    convs = [shape for name, shape in _weights(pruned.path).items() if name != "head"]
    assert convs == [(16, 3, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3)]
    assert layer_weights(onnx.load(str(pruned.path))) < 0.55 * layer_weights(onnx.load(str(model)))


def test_a_pruning_that_fails_the_gate_is_never_shipped_and_the_report_says_why(tmp_path: Path) -> None:
    model = transformer_ffn_model(tmp_path / "ffn.onnx")
    data = _data(tmp_path / "x.npz", "x", (SEQ, D))
    result = optimize(inspect_model(model), _pruned_at([0.875]), tmp_path / "work", data_path=data)
    assert "pruned" not in {c.name for c in result.candidates}
    assert result.chosen.name == "float"
    assert "no pruning ratio passed the gate (0.875:" in result.to_markdown()
    # Smallest first, up to the first that fails: the largest that passed ships, the rest are gone.
    result = optimize(inspect_model(model), _pruned_at([0.875, 0.25, 0.5]), tmp_path / "work2", data_path=data)
    pruned = {c.name: c for c in result.candidates}["pruned"]
    assert pruned.passed and pruned.path.name == "pruned-0.5.onnx"
    assert "the next ratio failed the gate: 0.875:" in pruned.recipe
    assert not list((tmp_path / "work2").glob("pruned-0.25*")) and not list((tmp_path / "work2").glob("pruned-0.875*"))


def test_a_ratio_that_rounds_back_to_every_channel_is_not_called_pruning(tmp_path: Path) -> None:
    # 32-channel blocks, kept channels rounded up to 8: 0.0625 keeps 30 -> 32, nothing removed.
    model = cnn_model(tmp_path / "cnn.onnx")
    data = _data(tmp_path / "images.npz", "image", (3, 16, 16), rows=64)
    result = optimize(inspect_model(model), _pruned_at([0.0625], "pruned-int8"), tmp_path / "work", data_path=data)
    assert not {"pruned", "pruned-int8"} & {c.name for c in result.candidates}
    assert ("no ratio of 0.0625 removes a channel: kept channels round up to a multiple of 8 and the blocks "
            "have 32") in result.to_markdown()
    # With a ratio that does remove some, only that one is tried.
    result = optimize(inspect_model(model), _pruned_at([0.0625, 0.5]), tmp_path / "work2", data_path=data)
    pruned = {c.name: c for c in result.candidates}["pruned"]
    assert pruned.passed and pruned.path.name == "pruned-0.5.onnx"
    assert not list((tmp_path / "work2").glob("pruned-0.0625*"))


def _held_out_error(path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    import onnxruntime as ort

    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.linalg.norm(got - reference) / np.linalg.norm(reference))


def test_the_least_squares_refit_lowers_the_error_of_the_same_pruning(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = transformer_ffn_model(tmp_path / "ffn.onnx")
    rng = np.random.default_rng(3)
    calibration = EvalData({"x": rng.standard_normal((64, SEQ, D)).astype(np.float32)}, None, "test rows", False)
    held = rng.standard_normal((64, SEQ, D)).astype(np.float32)
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": held})[0]
    pruner = Pruner(model, calibration)
    for ratio, at_most in ((0.5, 0.7), (0.75, 0.9)):  # at 0.75 channels that matter go too
        refit = _held_out_error(pruner.prune(ratio, tmp_path / f"refit-{ratio}.onnx").path, held, reference)
        plain = _held_out_error(pruner.prune(ratio, tmp_path / f"plain-{ratio}.onnx", refit=False).path, held,
                                reference)
        assert refit < at_most * plain, (ratio, refit, plain)


def test_constants_between_conv_layers_lose_the_pruned_channels_too(tmp_path: Path) -> None:
    """Before any float pass folds it: the BatchNormalization between conv1 and conv2 keeps the
    kept filters' statistics, and the smaller model's outputs stay close to float's."""
    import onnxruntime as ort

    model = cnn_model(tmp_path / "cnn.onnx")
    images = np.random.default_rng(5).standard_normal((32, 3, 16, 16)).astype(np.float32)
    pruned = Pruner(model, EvalData({"image": images}, None, "test rows", False)).prune(0.5, tmp_path / "p.onnx")
    graph = onnx.load(str(pruned.path)).graph
    sizes = {t.name: tuple(t.dims) for t in graph.initializer}
    bn = next(n for n in graph.node if n.op_type == "BatchNormalization")
    assert [sizes[name] for name in bn.input[1:]] == [(16,)] * 4
    assert pruned.kept == {"conv2": (16, 32), "conv3": (16, 32)}
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
           for p in (model, pruned.path)]
    assert np.linalg.norm(run[1] - run[0]) < 0.05 * np.linalg.norm(run[0])
