"""Measure what int8 quantization costs, node by node, and the helpers smoothing shares.

Mixed precision ranks the nodes an int8 recipe quantized (`quantized_nodes`) by their
measured effect on the model's output (`measure_effects`): the float model runs with only
that node computing on int8-rounded values (its activation inputs uint8 per tensor over
their range on the data, its weight int8 symmetric per output channel), and the relative
error of the model's output is the node's effect. The worst ones stay float first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model.files import model_paths, save_model, stored_external
from ..runtime.config import open_session
from .data import EvalData
from .measure import outputs


class Runner(Protocol):
    """What the measurements use of the optimization run (`run.Run`, or what a variant sees
    of it): scratch space, and a model's outputs from the sessions the gate uses."""

    work: Path

    def outputs(self, path: Path, data: EvalData) -> list[np.ndarray]: ...


CPU = ["CPUExecutionProvider"]
MAX_ROWS = 16  # a few rows rank layers reliably; more only costs memory
MAX_CAPTURE_BYTES = 1 << 30  # fewer rows for models with large activations (images)
EFFECT_ROWS = 4  # rows each node's effect is measured on: enough to rank, and each node costs a run
EFFECT_BYTES = 2 << 20  # fewer rows when one row's inputs are large (one 3x320x480 image)
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


def capture_session(model: onnx.ModelProto, tensors: list[str], source: Path | None = None):
    """A CPU session of the float model whose outputs include the named intermediate tensors,
    with no fusions, so that every tensor exists exactly as named in the graph.

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
    return open_session(model.SerializeToString(), {"graph_optimization_level": "disable"}, CPU,
                        external_data_folder=source.parent if external else None)


def capture_inputs(model: onnx.ModelProto, tensors: list[str], data: EvalData,
                   source: Path | None = None) -> dict[str, np.ndarray]:
    """Run the float model on a few rows and return the named intermediate tensors, as they are
    (`capture_session`)."""
    session = capture_session(model, tensors, source)
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


def quantized_nodes(float_graph: onnx.ModelProto, quantized: onnx.ModelProto) -> list[str]:
    """The nodes of `float_graph` an int8 recipe quantized, in graph order: those the quantized
    model replaced or folded away (MatMul -> MatMulInteger, Relu into its Q/DQ range), and
    those that read a DequantizeLinear output there (QDQ). Keeping all of them float with the
    recipe's `exclude` gives the float graph back."""
    dequantized = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in quantized.graph.node}
    changed = []
    for node in float_graph.graph.node:
        same = by_name.get(node.name)
        if same is None or same.op_type != node.op_type or any(i in dequantized for i in same.input):
            changed.append(node.name)
    return changed


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of the graph, as far as onnx's shape inference can tell."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    values = [*graph.input, *graph.value_info, *graph.output]
    return {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def _quantized_inputs(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto],
                      floats: set[str]) -> tuple[list[str], str | None]:
    """(activation inputs int8 would round per tensor, the weight it rounds per channel)."""
    weight = None
    if node.op_type in (*WEIGHT_OPS, "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights:
        tensor = weights[node.input[1]]
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) >= 2:
            weight = node.input[1]
    bias = 2 if node.op_type in (*WEIGHT_OPS, "ConvTranspose") else -1  # int32 in QDQ: no error worth ranking
    activations = [name for i, name in enumerate(node.input)
                   if name and name != weight and i != bias and name not in weights and name in floats]
    return activations, weight


def _ranges(model: onnx.ModelProto, tensors: list[str], run: Runner, data: EvalData) -> dict[str, tuple[float, float]]:
    """min and max of each tensor over `data`, from one run of the float model with a
    ReduceMin and a ReduceMax per tensor added as outputs (rows stream in batches)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    first = len(probe.graph.output)
    for i, name in enumerate(tensors):
        for op in ("ReduceMin", "ReduceMax"):
            out = f"mlpack_range_{i}_{op}"
            probe.graph.node.append(helper.make_node(op, [name], [out], name=out))
            probe.graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    path = save_model(probe, run.work / "ranges.onnx", external=False)  # external past 2 GB
    values = run.outputs(path, data)[first:]
    for file in model_paths(path):
        file.unlink()
    return {name: (float(np.min(values[2 * i])), float(np.max(values[2 * i + 1]))) for i, name in enumerate(tensors)}


def _fake_quantize(model: onnx.ModelProto, node: onnx.NodeProto, activations: list[str], weight: str | None,
                   ranges: dict[str, tuple[float, float]], weights: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    """A copy of `model` in which only `node` computes on int8-rounded values: its activation
    inputs through QuantizeLinear/DequantizeLinear (uint8, per tensor, over their measured range),
    its weight rounded to int8 per output channel."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    target = next(n for n in out.graph.node if n.name == node.name)
    added = []
    for name in activations:
        low, high = min(0.0, ranges[name][0]), max(0.0, ranges[name][1])
        scale = (high - low) / 255.0 or 1.0
        zero = int(np.clip(np.round(-low / scale), 0, 255))
        prefix = f"mlpack_fq/{name}"
        out.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}/scale"),
                                      numpy_helper.from_array(np.array(zero, np.uint8), f"{prefix}/zero")])
        added += [helper.make_node("QuantizeLinear", [name, f"{prefix}/scale", f"{prefix}/zero"], [f"{prefix}/q"]),
                  helper.make_node("DequantizeLinear", [f"{prefix}/q", f"{prefix}/scale", f"{prefix}/zero"],
                                   [f"{prefix}/dq"])]
        target.input[:] = [f"{prefix}/dq" if i == name else i for i in target.input]
    if weight is not None:
        w = numpy_helper.to_array(weights[weight]).astype(np.float32)
        axis = 1 if node.op_type == "ConvTranspose" else _output_axis(node)
        out.graph.initializer.append(numpy_helper.from_array(_fake_quant_weight(w, axis).astype(np.float32),
                                                             f"mlpack_fq/{weight}"))
        target.input[1] = f"mlpack_fq/{weight}"
    # The Q/DQ pairs go right before the node: what they read exists there, so the order stays topological.
    nodes = list(out.graph.node)
    at = next(i for i, n in enumerate(nodes) if n.name == node.name)
    del out.graph.node[:]
    out.graph.node.extend(nodes[:at] + added + nodes[at:])
    return out


def output_error(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    """How far `got` is from float's outputs: the worst output's relative L2 error (for float
    outputs), or share of values that differ (labels)."""
    worst = 0.0
    for ref, value in zip(reference, got):
        if ref.dtype.kind == "f":
            a, b = ref.astype(np.float64).ravel(), value.astype(np.float64).ravel()
            error = float(np.linalg.norm(a - b)) / (float(np.linalg.norm(a)) or 1.0)
            worst = max(worst, error if np.isfinite(error) else np.inf)
        else:
            worst = max(worst, float(np.mean(ref != value)))
    return worst


def effect_rows(data: EvalData) -> EvalData:
    """The few rows each unit's effect is measured on: EFFECT_ROWS, fewer when rows are large."""
    per_row = max(1, sum(v[:1].nbytes for v in data.inputs.values()))
    return data.take(slice(0, max(1, min(EFFECT_ROWS, EFFECT_BYTES // per_row))))


def measure_effects(float_graph: Path, units: list[str], run: Runner, data: EvalData) -> list[LayerError]:
    """Each of `units` (nodes an int8 recipe quantized) ranked by its measured effect on the
    model's output: the float model is run with only that node's inputs and weight rounded to
    int8, on a few rows of `data`, and compared with float. Worst first.

    Sessions are the optimizer's own (`run.outputs`); rows are few and small (EFFECT_ROWS, at
    most EFFECT_BYTES of inputs), since every unit costs one session and one run."""
    model = onnx.load(str(float_graph))
    weights = {t.name: t for t in model.graph.initializer}
    floats = _float_tensors(model)
    nodes = {n.name: n for n in model.graph.node}
    plan = {name: _quantized_inputs(nodes[name], weights, floats) for name in units if name in nodes}
    rows = effect_rows(data)
    tensors = sorted({t for activations, _ in plan.values() for t in activations})
    ranges = _ranges(model, tensors, run, rows) if tensors else {}  # enough to rank; its memory stays small
    reference = run.outputs(float_graph, rows)
    path, external = run.work / "effect.onnx", stored_external(float_graph)
    effects = []
    for name, (activations, weight) in plan.items():
        if not activations and weight is None:
            continue  # nothing this node reads is rounded (e.g. a Relu folded into its producer's range)
        probe = _fake_quantize(model, nodes[name], activations, weight, ranges, weights)
        save_model(probe, path, external=external)
        size = int(np.prod(weights[weight].dims)) if weight else 0
        effects.append(LayerError(name, nodes[name].op_type, output_error(reference, run.outputs(path, rows)), size))
    for file in model_paths(path):
        file.unlink()
    return sorted(effects, key=lambda e: e.relative_error, reverse=True)
