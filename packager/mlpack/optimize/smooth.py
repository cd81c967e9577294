"""Activation smoothing before int8 (the SmoothQuant idea, Xiao et al. 2023).

Dynamic int8 gives each activation tensor one scale, so a few input channels with large
values (common after LayerNorm and GELU in transformers) leave the other channels only a
few of the 256 levels. Dividing input channel k by s_k and multiplying row k of every
weight that reads it by s_k computes the same function in float, and moves part of the
range from activations (per tensor) into weights (per channel, cheap to quantize).

s_k = max|x_k|^a / max|w_k|^(1-a). The strength `a` is chosen from a small grid (the
smooth-int8 variant's config, variants/smooth_int8.py) by quantizing the whole model at
each strength and comparing its outputs with float's on the calibration rows (not the
gate's rows): the per-layer error alone misleads, since padding positions and later
layers decide what matters.

Where the smoothed tensor comes from a weight MatMul (and its bias Add), directly or
through a Relu (relu(h) / s = relu(h / s) for s > 0), and nothing else reads it, the
division is folded into that MatMul's weight columns and bias: no extra op at all (the
SmoothQuant paper folds into the LayerNorm before). Otherwise it costs one element-wise
Mul, inserted on the MatMuls' side so other readers see the tensor as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model.files import save_model, stored_external
from .data import EvalData
from .sensitivity import capture_inputs, channel_absmax, int8_error


@dataclass(frozen=True)
class Smoothing:
    tensor: str  # the activation tensor that is divided
    strength: float
    error_before: float
    error_after: float
    scales: np.ndarray  # s_k per input channel


def activation_groups(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensors whose every reader is a MatMul with its own 2-D constant weight."""
    weights = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    groups: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if (n.op_type == "MatMul" and n.input[0] not in weights and n.input[1] in weights
                and len(weights[n.input[1]].dims) == 2 and uses[n.input[1]] == 1
                and weights[n.input[1]].data_type == onnx.TensorProto.FLOAT):
            groups.setdefault(n.input[0], []).append(n)
    # Other readers of a tensor (a residual Add, say) keep reading it unscaled: the Mul is
    # inserted on the MatMuls' edge only.
    return groups


def plan(model_path: Path, data: EvalData, strength: float) -> list[Smoothing]:
    """Per-channel scales for every activation tensor read by weight MatMuls, at one strength."""
    model = onnx.load(str(model_path))
    groups = activation_groups(model)
    if not groups:
        return []
    weights = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    captured = capture_inputs(model, list(groups), data, source=model_path)
    absmax = channel_absmax(model, list(groups), data, source=model_path)
    chosen = []
    for tensor, nodes in groups.items():
        x = captured[tensor].reshape(-1, captured[tensor].shape[-1])
        ws = [weights[n.input[1]] for n in nodes]
        x_max = np.maximum(absmax[tensor], 1e-5)
        w_max = np.maximum(np.max([np.abs(w).max(axis=1) for w in ws], axis=0), 1e-5)
        raw = x_max**strength / w_max ** (1 - strength)
        # Only attenuate channels louder than the typical one (s >= 1): a channel that was
        # quiet in calibration must never be amplified, or one unseen value would blow up
        # the tensor's int8 scale at serving time.
        s = np.clip(raw / np.median(raw), 1.0, 1e3).astype(np.float32)
        before = float(np.mean([int8_error(x, w) for w in ws]))
        after = float(np.mean([int8_error(x / s, w * s[:, None]) for w in ws]))
        chosen.append(Smoothing(tensor, strength, before, after, s))
    return chosen


def foldable_into(model: onnx.ModelProto, tensor: str) -> list[str]:
    """The initializers whose last axis can take `tensor`'s division instead of a Mul: the
    weight of the MatMul that makes it, and that MatMul's bias, when `tensor` is that
    MatMul's (+ bias) output, or its Relu's, every tensor on the way has one reader, and
    only weight MatMuls read `tensor`. Empty when anything else would see scaled values."""
    weights = {t.name: t for t in model.graph.initializer}
    made_by = {out: n for n in model.graph.node for out in n.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    graph_outputs = {o.name for o in model.graph.output}

    def private(name: str) -> bool:  # one reader and not a graph output
        return name in made_by and readers.get(name) == 1 and name not in graph_outputs

    def const_vector(name: str, width: int) -> bool:
        t = weights.get(name)
        return (t is not None and readers.get(name) == 1 and list(t.dims) in ([width], [1, width])
                and t.data_type == onnx.TensorProto.FLOAT)

    if tensor in graph_outputs or tensor not in made_by or readers[tensor] != len(activation_groups(model).get(tensor, [])):
        return []
    node = made_by[tensor]
    if node.op_type == "Relu" and private(node.input[0]):
        node = made_by[node.input[0]]
    folded = []
    if node.op_type == "Add" and len(node.input) == 2:
        bias, inner = (node.input[1], node.input[0]) if node.input[1] in weights else (node.input[0], node.input[1])
        if not private(inner) or made_by[inner].op_type != "MatMul":
            return []
        folded.append(bias)
        node = made_by[inner]
    if node.op_type != "MatMul" or node.input[1] not in weights or readers.get(node.input[1]) != 1:
        return []
    w = weights[node.input[1]]
    if len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT or not all(const_vector(b, w.dims[1]) for b in folded):
        return []
    return [node.input[1], *folded]


def apply(src: Path, dst: Path, smoothing: list[Smoothing]) -> Path:
    """Write the smoothed float model: same function, int8-friendlier activations."""
    model = onnx.load(str(src))
    by_tensor = {s.tensor: s for s in smoothing}
    weights = {t.name: t for t in model.graph.initializer}

    def rescale(name: str, factor: np.ndarray) -> None:
        weights[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights[name]).astype(np.float32) * factor,
                                                       name))

    # Fold the division into the producer where nothing else reads the tensor (see above),
    # else insert one Mul right where it is read; then rescale the weights that read it.
    folded = {tensor: names for tensor in by_tensor if (names := foldable_into(model, tensor))}
    for tensor, names in folded.items():
        for name in names:
            rescale(name, 1.0 / by_tensor[tensor].scales)
    new_nodes = []
    inserted: set[str] = set(folded)
    for node in model.graph.node:
        tensor = node.input[0] if node.op_type == "MatMul" and node.input else None
        if tensor in by_tensor:
            s = by_tensor[tensor].scales
            smoothed = tensor if tensor in folded else f"{tensor}/smoothed"
            if tensor not in inserted:
                inv = f"{tensor}/smooth_inv"
                model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
                new_nodes.append(helper.make_node("Mul", [tensor, inv], [smoothed], name=f"{tensor}/smooth"))
                inserted.add(tensor)
            rescale(node.input[1], s[:, None])
            node.input[0] = smoothed
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return save_model(model, dst, external=stored_external(src))
