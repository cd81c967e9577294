"""Measure how much error int8 quantization adds at each weight layer of a model.

For every MatMul/Gemm with constant weights, the float model is run once on data to
capture the layer's real input; the layer is then computed again with the input and the
weights rounded to int8 the way dynamic quantization does it (activations uint8 per
tensor, weights int8 symmetric per output channel). The relative error of the layer's
output ranks the layers: mixed precision keeps the worst ones in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .data import EvalData

MAX_ROWS = 16  # a few rows rank layers reliably; more only costs memory


@dataclass(frozen=True)
class LayerError:
    node: str
    op_type: str
    relative_error: float
    weight_elements: int


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    low, high = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (high - low) / 255.0 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_weight(w: np.ndarray) -> np.ndarray:
    """int8 symmetric per output channel (the last axis of a MatMul weight)."""
    scale = np.abs(w).max(axis=0, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -127, 127) * scale


def _weight_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, np.ndarray]]:
    weights = {t.name: t for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        if w.ndim != 2 or node.input[0] in weights:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and attrs.get("transB", 0):
            w = w.T
        if node.op_type == "Gemm" and attrs.get("transA", 0):
            continue  # rare; not worth simulating
        layers.append((node, w))
    return layers


def capture_inputs(model: onnx.ModelProto, tensors: list[str], data: EvalData) -> dict[str, np.ndarray]:
    """Run the float model on a few rows and return the named intermediate tensors."""
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            existing.add(name)
    options = ort.SessionOptions()
    # No fusions: every captured tensor must exist exactly as named in the graph.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rows = data.take(slice(0, MAX_ROWS))
    values = session.run(list(dict.fromkeys(tensors)), rows.inputs)
    return {name: v.astype(np.float32).reshape(-1, v.shape[-1]) for name, v in zip(dict.fromkeys(tensors), values)}


def channel_absmax(model: onnx.ModelProto, tensors: list[str], data: EvalData) -> dict[str, np.ndarray]:
    """Per-channel max |value| of intermediate tensors over every row of `data` (in chunks)."""
    out: dict[str, np.ndarray] = {}
    for start in range(0, data.rows, MAX_ROWS):
        chunk = capture_inputs(model, tensors, data.take(slice(start, start + MAX_ROWS)))
        for name, value in chunk.items():
            m = np.abs(value).max(axis=0)
            out[name] = np.maximum(out[name], m) if name in out else m
    return out


def int8_error(x: np.ndarray, w: np.ndarray) -> float:
    """Relative error of x @ w when both are rounded as dynamic int8 quantization does."""
    exact = x @ w
    approx = _fake_quant_activation(x) @ _fake_quant_weight(w)
    return float(np.linalg.norm(approx - exact)) / (float(np.linalg.norm(exact)) or 1.0)


def weight_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, np.ndarray]]:
    return _weight_layers(model)


def measure_layers(model_path: Path, data: EvalData) -> list[LayerError]:
    """Each weight layer's int8 error on `data`, worst first."""
    model = onnx.load(str(model_path))
    layers = _weight_layers(model)
    if not layers:
        return []
    captured = capture_inputs(model, [node.input[0] for node, _ in layers], data)
    errors = [
        LayerError(node.name, node.op_type, int8_error(captured[node.input[0]], w), w.size)
        for node, w in layers
    ]
    return sorted(errors, key=lambda e: e.relative_error, reverse=True)
