"""Measure how much error int8 quantization adds at each weight layer of a model.

For every MatMul, Gemm and Conv with constant weights, the float model is run once on
data to capture the layer's real input; the layer alone is then run again in
onnxruntime with its input and weights rounded to int8 (activations uint8 per tensor
over the captured range, weights int8 symmetric per output channel). The relative error
of the layer's output ranks the layers: mixed precision keeps the worst ones in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model_files import stored_external
from ..runtime.config import open_session
from .data import EvalData
from .measure import outputs

CPU = ["CPUExecutionProvider"]
MAX_ROWS = 16  # a few rows rank layers reliably; more only costs memory
MAX_CAPTURE_BYTES = 1 << 30  # fewer rows for models with large activations (images)
WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


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


def _fake_quant_weight(w: np.ndarray, axis: int = -1) -> np.ndarray:
    """int8 symmetric per output channel (`axis`: the last axis of a MatMul weight)."""
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = np.abs(w).max(axis=reduce, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -127, 127) * scale


def _output_axis(node: onnx.NodeProto) -> int:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return -1


def weight_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, np.ndarray]]:
    """(node, weight as stored) for MatMul/Gemm/Conv nodes with a constant float weight."""
    weights = {t.name: t for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in weights:
            continue
        if node.input[0] in weights or weights[node.input[1]].data_type != onnx.TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        if (node.op_type != "Conv" and w.ndim != 2) or (node.op_type == "Conv" and w.ndim < 3):
            continue
        layers.append((node, w))
    return layers


def capture_inputs(model: onnx.ModelProto, tensors: list[str], data: EvalData,
                   source: Path | None = None) -> dict[str, np.ndarray]:
    """Run the float model on a few rows and return the named intermediate tensors, as they are.

    `source`, the file `model` was read from: when its weights are external, the session
    reads them from there and only the graph is copied (a model over 2 GB fits in no one
    protobuf message, so it cannot be copied whole)."""
    external = source is not None and stored_external(source)
    model = onnx.load(str(source), load_external_data=False) if external else \
        onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            existing.add(name)
    # No fusions: every captured tensor must exist exactly as named in the graph.
    session = open_session(model.SerializeToString(), {"graph_optimization_level": "disable"}, CPU,
                           external_data_folder=source.parent if external else None)
    names = list(dict.fromkeys(tensors))
    # Rows go in batches the model accepts (a model may fix its batch size, e.g. to 1).
    first = outputs(session, data.take(slice(0, 1)), names)
    per_row = sum(v.nbytes for v in first) or 1
    rows = data.take(slice(0, max(1, min(MAX_ROWS, MAX_CAPTURE_BYTES // per_row))))
    values = outputs(session, rows, names)
    return {name: v.astype(np.float32) for name, v in zip(names, values)}


def channel_absmax(model: onnx.ModelProto, tensors: list[str], data: EvalData,
                   source: Path | None = None) -> dict[str, np.ndarray]:
    """Per-channel max |value| of intermediate tensors over every row of `data` (in chunks)."""
    out: dict[str, np.ndarray] = {}
    for start in range(0, data.rows, MAX_ROWS):
        chunk = capture_inputs(model, tensors, data.take(slice(start, start + MAX_ROWS)), source)
        for name, value in chunk.items():
            m = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            out[name] = np.maximum(out[name], m) if name in out else m
    return out


def int8_error(x: np.ndarray, w: np.ndarray) -> float:
    """Relative error of x @ w when both are rounded as dynamic int8 quantization does."""
    exact = x @ w
    approx = _fake_quant_activation(x) @ _fake_quant_weight(w)
    return float(np.linalg.norm(approx - exact)) / (float(np.linalg.norm(exact)) or 1.0)


def _layer_error(node: onnx.NodeProto, x: np.ndarray, w: np.ndarray, extras: dict[str, np.ndarray]) -> float:
    """Run the node alone on (x, w) and on their int8-rounded copies; relative output error."""
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape)),
              helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, list(w.shape))]
    inits = [numpy_helper.from_array(v, name) for name, v in extras.items()]
    rest = [name for name in node.input[2:]]
    single = helper.make_node(node.op_type, ["x", "w", *rest], ["y"], **{
        a.name: helper.get_attribute_value(a) for a in node.attribute})
    graph = helper.make_graph([single], "layer", inputs, [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = open_session(model.SerializeToString(), {}, CPU)
    exact = session.run(None, {"x": x, "w": w})[0]
    approx = session.run(None, {"x": _fake_quant_activation(x).astype(np.float32),
                                "w": _fake_quant_weight(w, _output_axis(node)).astype(np.float32)})[0]
    return float(np.linalg.norm(approx - exact)) / (float(np.linalg.norm(exact)) or 1.0)


def measure_layers(model_path: Path, data: EvalData) -> list[LayerError]:
    """Each weight layer's int8 error on `data`, worst first."""
    model = onnx.load(str(model_path))
    layers = weight_layers(model)
    if not layers:
        return []
    captured = capture_inputs(model, [node.input[0] for node, _ in layers], data, source=model_path)
    inits = {t.name: t for t in model.graph.initializer}
    errors = []
    for node, w in layers:
        extras = {name: numpy_helper.to_array(inits[name]) for name in node.input[2:] if name in inits}
        if len(extras) != len([n for n in node.input[2:] if n]):
            continue  # a bias computed at run time: rare, skip
        errors.append(LayerError(node.name, node.op_type, _layer_error(node, captured[node.input[0]], w, extras), w.size))
    return sorted(errors, key=lambda e: e.relative_error, reverse=True)
