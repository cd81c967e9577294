"""Self-attention written as plain ops (the graph benchmarks/minilm_model.py builds, here with a
BERT in miniature's random weights) becomes onnxruntime's Attention before dynamic int8, with the
same outputs; what does not match the pattern is left as it was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from benchmarks.minilm_model import random_weights, write_encoder
from mlpack.optimize.attention import fuse_attention
from mlpack.optimize.passes import attention_fused, dynamic_int8

LAYERS = 2


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    weights, config = random_weights(layers=LAYERS)
    return write_encoder(tmp_path_factory.mktemp("encoder") / "encoder.onnx", weights, config)


def tokens(rows: int = 6, seq: int = 16, seed: int = 1) -> dict[str, np.ndarray]:
    """Token ids with padding at the end of all but the first row, as a tokenizer pads a batch."""
    rng = np.random.default_rng(seed)
    lengths = [seq] + list(rng.integers(3, seq, rows - 1))
    mask = np.array([[1] * n + [0] * (seq - n) for n in lengths], np.int64)
    return {"input_ids": rng.integers(0, 64, (rows, seq)).astype(np.int64) * mask, "attention_mask": mask}


def run(model: Path | onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def ops(model: Path | onnx.ModelProto) -> Counter:
    model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return Counter(node.op_type for node in model.graph.node)


def test_each_layers_attention_becomes_one_attention_node_with_the_same_outputs(encoder: Path) -> None:
    model = onnx.load(str(encoder))
    assert fuse_attention(model) == LAYERS
    fused = ops(model)
    assert fused["Attention"] == LAYERS and fused["Softmax"] == 0 and fused["Transpose"] == 0
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]  # the signature stays
    onnx.checker.check_model(model)
    feed = tokens()
    np.testing.assert_allclose(run(model, feed), run(encoder, feed), atol=1e-5)


def test_dynamic_int8_quantizes_the_fused_attention_and_its_recipe_says_so(encoder: Path, tmp_path: Path) -> None:
    int8 = dynamic_int8(encoder, tmp_path / "int8.onnx")
    assert ops(int8)["QAttention"] == LAYERS and ops(encoder)["Attention"] == 0  # the input is untouched
    assert attention_fused(int8) == ("; self-attention fused into onnxruntime's Attention first (2 layers, "
                                     "run as QAttention)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]  # the fused float graph is gone
    feed = tokens()
    a, b = run(int8, feed), run(encoder, feed)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99


def test_a_layer_whose_projections_stay_float_is_left_unfused(encoder: Path, tmp_path: Path) -> None:
    model = onnx.load(str(encoder))
    assert fuse_attention(model, keep_float={"layer1.key/MatMul"}) == 1
    int8 = dynamic_int8(encoder, tmp_path / "int8.onnx", exclude=["layer1.key/MatMul"])
    assert ops(int8)["QAttention"] == 1 and "layer1.key/MatMul" in {n.name for n in onnx.load(str(int8)).graph.node}


def test_attention_whose_inner_tensors_are_read_elsewhere_is_left_as_it_is(encoder: Path) -> None:
    model = onnx.load(str(encoder))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    model.graph.output.append(helper.make_tensor_value_info(softmax.output[0], onnx.TensorProto.FLOAT, None))
    assert fuse_attention(model) == LAYERS - 1
    assert ops(model)["Softmax"] == 1


def test_a_softmax_that_is_no_attention_is_left_as_it_is() -> None:
    from onnx import TensorProto, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"], axis=-1)],
        "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3])], [weight])
    model = helper.make_model(graph)
    before = model.SerializeToString()
    assert fuse_attention(model) == 0 and model.SerializeToString() == before
