"""Structured pruning: whole feed-forward channels and conv filters removed, the next layer refit.

Zeroed weights in a dense model cost the same arithmetic (docs/optimization.md); a smaller
dense matrix does not. A *block* is two weight layers with only channel-wise operations
between them: MatMul(x, W1 [d, h]) -> Add bias, Gelu (or its Erf form), Relu... ->
MatMul(., W2 [h, d2]), the feed-forward part of a transformer layer or an MLP; or
Conv(K1 [c, ...]) -> BatchNormalization, Relu, pooling... -> Conv(K2 [c2, c, ...]). Channel
j of the first layer reaches the output only through row j of W2 (input channel j of K2),
so dropping column j of W1 (filter j of K1), its per-channel constants and row j of W2
leaves a smaller dense model. Nothing crosses an Add of two activations, a Concat or a
Reshape: those tie channels to other tensors (residuals, attention heads).

Then the second layer's weights and bias are refit by least squares, so that on the
calibration rows its output matches the float model's (Kwon et al., NeurIPS 2022, "A Fast
Post-Training Pruning Framework for Transformers"): the kept channels take over what the
dropped ones did. Which channels: those whose removal, with that refit, loses least, chosen
greedily on the refit's normal equations as Optimal Brain Surgeon does for whole rows
(`_least_loss`); without the refit, those with the least output energy. A ridge pulls the
refit towards the weights as they were, since a few calibration rows cannot pin thousands of
weights. Blocks are pruned in graph order, each refit on the activations of the model pruned
so far, so a later block also corrects what an earlier one left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model.files import save_model, stored_external
from .data import EvalData
from .measure import outputs
from .sensitivity import capture_session

# Operators that act on each channel alone: a block may have any chain of them between its layers.
CHANNELWISE = frozenset({
    "Abs", "Add", "BatchNormalization", "Celu", "Clip", "Div", "Elu", "Erf", "Exp", "Gelu", "HardSigmoid",
    "HardSwish", "Identity", "LeakyRelu", "Mish", "Mul", "Neg", "Pow", "PRelu", "Relu", "Selu", "Sigmoid",
    "Softplus", "Softsign", "Sqrt", "Sub", "Tanh",
})
POOLING = frozenset({"AveragePool", "LpPool", "MaxPool"})  # per channel over space: conv blocks only
MAX_ROWS = 128  # calibration rows the refit reads at most
CAPTURE_BYTES = 768 << 20  # ...and fewer when the captured activations of that many would exceed this
SHRINK = 0.1  # ridge towards the weights as they are, relative to the mean activation energy (MiniLM: 0.1 beat 0.01, 0.3 and 1)


@dataclass(frozen=True)
class Block:
    kind: str  # "ffn" (MatMul pair) or "conv"
    first: str  # node names
    second: str
    channels: int
    between: tuple[str, ...]  # the channel-wise nodes between the two layers
    region: tuple[str, ...]  # the tensors whose channel axis is pruned


@dataclass
class Pruned:
    """What one pruning made: the model and, per block, the channels kept of how many."""

    path: Path
    ratio: float
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)  # second layer -> (kept, of)
    weights_before: int = 0  # elements of MatMul/Gemm/Conv weights: MACs per token (or output pixel)
    weights_after: int = 0

    def describe(self) -> str:
        blocks = list(self.kept.values())
        channels = sorted({f"{of}->{kept}" for kept, of in blocks})
        share = 1 - self.weights_after / self.weights_before if self.weights_before else 0.0
        return (f"{len(blocks)} block(s) pruned ({', '.join(channels)} channels), layer weights "
                f"{self.weights_before:,} -> {self.weights_after:,} elements ({share:.0%} fewer MACs in those "
                f"layers)")


def find_blocks(model: onnx.ModelProto) -> list[Block]:
    """The prunable blocks, in graph order."""
    consts = _constants(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs_ = {o.name for o in model.graph.output}
    blocks = []
    for node in model.graph.node:
        block = _block_from(node, consts, consumers, outputs_)
        if block is not None:
            blocks.append(block)
    return blocks


def layer_weights(model: onnx.ModelProto) -> int:
    """Elements of the constant weights of MatMul, Gemm and Conv layers: the MACs per token
    (per output position for Conv) of a model's weight layers."""
    sizes = {t.name: math.prod(t.dims) for t in model.graph.initializer}
    return sum(sizes.get(n.input[1], 0) for n in model.graph.node
               if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1)


class Pruner:
    """Prunes one float model at any ratio; the float model's outputs of every block's second
    layer on the calibration rows (the refit's targets) are captured once, at the first
    pruning (`removes_any` needs none of them)."""

    def __init__(self, base: Path, calibration: EvalData, *, multiple: int = 8) -> None:
        self.base, self.multiple, self.calibration = base, multiple, calibration
        self.model = onnx.load(str(base))
        self.blocks = find_blocks(self.model)
        nodes = {n.name: n for n in self.model.graph.node}
        self.target_names = {b.second: nodes[b.second].output[0] for b in self.blocks}
        self.refit_inputs = [nodes[b.second].input[0] for b in self.blocks]

    @cached_property
    def rows(self) -> EvalData:
        return _rows(self.model, [*self.target_names.values(), *self.refit_inputs], self.calibration)

    @cached_property
    def targets(self) -> dict[str, np.ndarray]:
        return _capture(self.model, list(self.target_names.values()), self.rows)

    @cached_property
    def mask(self) -> np.ndarray | None:
        return _token_mask(self.rows)

    def keep(self, block: Block, ratio: float) -> int:
        """The channels of `block` that `ratio` keeps, rounded up to `multiple`."""
        return min(block.channels,
                   max(self.multiple, math.ceil((1 - ratio) * block.channels / self.multiple) * self.multiple))

    def removes_any(self, ratio: float) -> bool:
        """Whether `ratio` removes a channel from any block: on narrow blocks a small ratio
        rounds back up to every channel, and the 'pruned' model would be the model itself."""
        return any(self.keep(block, ratio) < block.channels for block in self.blocks)

    def prune(self, ratio: float, dst: Path, *, refit: bool = True) -> Pruned:
        """The model with `ratio` of each block's channels removed (kept counts rounded up to
        `multiple`), the second layers refit by least squares unless `refit` is False."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        result = Pruned(dst, ratio, weights_before=layer_weights(model))
        for block in self.blocks:
            keep = self.keep(block, ratio)
            if keep >= block.channels:
                continue
            nodes = {n.name: n for n in model.graph.node}
            second = nodes[block.second]
            x = _capture(model, [second.input[0]], self.rows)[second.input[0]]
            y = self.targets[self.target_names[block.second]]
            if block.kind == "ffn" and self.mask is not None and x.shape[:2] == self.mask.shape:
                x, y = x[self.mask], y[self.mask]  # padding positions: no output reads them
            _prune_block(model, block, x, y, keep, refit)
            result.kept[block.second] = (keep, block.channels)
        _drop_unused(model)
        result.weights_after = layer_weights(model)
        save_model(model, dst, external=stored_external(self.base))
        return result


# ---- finding blocks -------------------------------------------------------------------------


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                consts[node.output[0]] = numpy_helper.to_array(value)
    return consts


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _layer(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> np.ndarray | None:
    """The float weight of a MatMul (2-D) or ungrouped Conv reading an activation, else None."""
    if node.op_type not in ("MatMul", "Conv") or len(node.input) < 2 or node.input[0] in consts:
        return None
    w = consts.get(node.input[1])
    if w is None or w.dtype != np.float32:
        return None
    if node.op_type == "MatMul":
        return w if w.ndim == 2 else None
    if w.ndim < 3 or _attrs(node).get("group", 1) != 1 or (len(node.input) > 2 and node.input[2] not in consts):
        return None
    return w


def _block_from(first: onnx.NodeProto, consts: dict[str, np.ndarray], consumers: dict[str, list[onnx.NodeProto]],
                graph_outputs: set[str]) -> Block | None:
    w1 = _layer(first, consts)
    if w1 is None:
        return None
    conv = first.op_type == "Conv"
    channels = w1.shape[0] if conv else w1.shape[1]
    offset = w1.ndim - 1 if conv else 1  # the channel axis, counted from the right
    region, between, second = [first.output[0]], [], None
    stack, seen = [first.output[0]], set()
    while stack:
        tensor = stack.pop()
        if tensor in graph_outputs:
            return None
        for node in consumers.get(tensor, []):
            if node.name in seen:
                continue
            w2 = _layer(node, consts) if node.op_type == first.op_type else None
            fits = w2 is not None and w2.shape[1 if conv else 0] == channels
            if fits and node.input[0] == tensor and tensor not in node.input[1:]:
                if second is not None and second is not node:
                    return None
                second = node
                continue
            if node.op_type not in CHANNELWISE and not (conv and node.op_type in POOLING):
                return None
            if len(node.output) != 1:  # BatchNormalization in training mode
                return None
            seen.add(node.name)
            between.append(node)
            region.append(node.output[0])
            stack.append(node.output[0])
    if second is None or (not between and not conv):
        return None  # two MatMuls back to back are one linear map: nothing to gain from a channel
    inside = set(region)
    for node in between:
        for i, name in enumerate(node.input):
            if not name or name in inside:
                continue
            value = consts.get(name)
            if value is None:
                return None  # reads another activation: a residual, or a gate from elsewhere
            if node.op_type == "BatchNormalization" and value.shape != (channels,):
                return None
            if node.op_type != "BatchNormalization" and not _per_channel_or_shared(value, offset, channels):
                return None
    return Block("conv" if conv else "ffn", first.name, second.name, channels, tuple(n.name for n in between),
                 tuple(region))


def _per_channel_or_shared(value: np.ndarray, offset: int, channels: int) -> bool:
    """A constant that broadcasts against the activation the same for every channel, or one per channel."""
    if value.ndim < offset:
        return True
    return value.shape[value.ndim - offset] in (1, channels)


# ---- pruning one block ---------------------------------------------------------------------


def _rows(model: onnx.ModelProto, tensors: list[str], data: EvalData) -> EvalData:
    """The calibration rows the refit reads: at most MAX_ROWS, fewer when their activations are large."""
    first = _capture(model, tensors, data.take(slice(0, 1)))
    per_row = sum(v.nbytes for v in first.values()) or 1
    return data.take(slice(0, max(1, min(MAX_ROWS, data.rows, CAPTURE_BYTES // per_row))))


def _token_mask(data: EvalData) -> np.ndarray | None:
    """Which positions are real tokens, from an input named like `attention_mask` ([rows, sequence]
    of 0 and 1), so that padding positions do not steer the refit; None for other models."""
    for name, value in data.inputs.items():
        if "mask" in name.lower() and value.ndim == 2 and value.dtype.kind in "biu" and \
                np.isin(value, (0, 1)).all() and value.any():
            return value.astype(bool)
    return None


def _capture(model: onnx.ModelProto, tensors: list[str], data: EvalData) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(tensors))
    values = outputs(capture_session(model, names), data, names)
    return {name: v.astype(np.float32) for name, v in zip(names, values)}


def _features(x: np.ndarray, second: onnx.NodeProto, kernel: tuple[int, ...]) -> np.ndarray:
    """The second layer's input as rows of a matrix product with its weight: [positions, channels]
    for MatMul; the conv's patches [output positions, channels * kernel] (im2col) for Conv."""
    if second.op_type == "MatMul":
        return x.reshape(-1, x.shape[-1])
    attrs = _attrs(second)
    spatial = len(kernel)
    strides = attrs.get("strides", [1] * spatial)
    dilations = attrs.get("dilations", [1] * spatial)
    pads = attrs.get("pads", [0] * 2 * spatial)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise ValueError(f"{second.name}: auto_pad SAME is not supported by the refit")
    x = np.pad(x, [(0, 0), (0, 0), *((pads[i], pads[i + spatial]) for i in range(spatial))])
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations))
    windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + spatial)))
    # windows: [n, c, out..., span...]: stride over outputs, dilate within the window
    windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in strides),
                       *(slice(None, None, d) for d in dilations))]
    n, c = windows.shape[:2]
    out = windows.shape[2:2 + spatial]
    moved = np.moveaxis(windows, 1, 1 + spatial)  # [n, out..., c, kernel...]
    return moved.reshape(n * math.prod(out), c * math.prod(kernel))


def _target(y: np.ndarray, second: onnx.NodeProto) -> np.ndarray:
    """The float second layer's output as [positions, output channels]."""
    if second.op_type == "MatMul":
        return y.reshape(-1, y.shape[-1])
    return np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])


def _prune_block(model: onnx.ModelProto, block: Block, x: np.ndarray, y: np.ndarray, keep: int,
                 refit: bool) -> None:
    nodes = {n.name: n for n in model.graph.node}
    consts = _constants(model)
    first, second = nodes[block.first], nodes[block.second]
    w2 = consts[second.input[1]].astype(np.float64)
    conv = second.op_type == "Conv"
    kernel = tuple(w2.shape[2:]) if conv else ()
    per = math.prod(kernel) if conv else 1  # features per channel
    bias_at = _bias(model, second, consts)  # (node, input index, value) of the bias the refit may move
    # The refit's normal equations over all channels, centred where a bias takes the means.
    f, target = _features(x, second, kernel), _target(y, second)
    rows = len(f)
    mean_f, mean_t = f.mean(axis=0, dtype=np.float64), target.mean(axis=0, dtype=np.float64)
    f -= mean_f.astype(np.float32)
    target = target - mean_t.astype(np.float32)
    gram, cross = (f.T @ f).astype(np.float64), (f.T @ target).astype(np.float64)
    del f, target
    if not bias_at:
        gram += rows * np.outer(mean_f, mean_f)
        cross += rows * np.outer(mean_f, mean_t)
    w_rows = w2.reshape(w2.shape[0], block.channels, per).transpose(1, 2, 0) if conv else w2[:, None, :]
    # A ridge towards the weights as they are: few calibration rows must not pull them far.
    ridge = SHRINK * (np.trace(gram) / len(gram) or 1.0)
    gram += np.eye(len(gram)) * ridge
    cross += ridge * w_rows.reshape(len(gram), -1)
    if refit:
        kept = _least_loss(gram, cross, block.channels, per, keep)
    else:  # the largest contributions to the output as it is: the energy of x_j w_j over the rows
        diag = np.einsum("jajb->jab", gram.reshape(block.channels, per, block.channels, per))
        kept = np.sort(np.argsort(np.einsum("jao,jab,jbo->j", w_rows, diag, w_rows))[::-1][:keep])
    columns = (kept[:, None] * per + np.arange(per)).ravel()
    new_w = w_rows[kept].reshape(keep * per, -1)  # [kept features, outputs]
    if refit:  # the ridge makes the kept block positive definite: solve, not lstsq's SVD (13 s against 0.1 at 2048)
        new_w = np.linalg.solve(gram[np.ix_(columns, columns)], cross[columns])
    if bias_at and refit:  # the intercept: what the kept channels' means no longer give
        node, index, value = bias_at
        intercept = mean_t - mean_f[columns] @ new_w
        new_bias = intercept if conv else value.reshape(-1) + intercept
        _set_input(model, node, index, new_bias.reshape(value.shape).astype(np.float32))
    # Write the smaller layers: first layer's output channels, the constants between, second's inputs.
    _slice_input(model, first, 1, consts, kept, 0 if conv else 1)
    if conv and len(first.input) > 2 and first.input[2]:
        _slice_input(model, first, 2, consts, kept, 0)
    offset = w2.ndim - 1 if conv else 1  # the channel axis of the activations, counted from the right
    for name in block.between:
        node = nodes[name]
        for i, tensor in enumerate(node.input):
            value = consts.get(tensor)
            if value is None or value.size == 1:
                continue
            axis = 0 if node.op_type == "BatchNormalization" else value.ndim - offset
            if axis >= 0 and value.shape[axis] == block.channels:
                _slice_input(model, node, i, consts, kept, axis)
    # new_w holds the kept features (channel-major, then kernel positions) by output channel
    shaped = new_w.T.reshape(w2.shape[0], keep, *kernel) if conv else new_w
    _set_input(model, second, 1, shaped.astype(np.float32))
    region = set(block.region)
    kept_info = [v for v in model.graph.value_info if v.name not in region]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept_info)


def _least_loss(gram: np.ndarray, cross: np.ndarray, channels: int, per: int, keep: int) -> np.ndarray:
    """The `keep` channels whose least-squares refit loses least, chosen greedily as Optimal Brain
    Surgeon does for whole rows (the cost of dropping channel j with the others refit is
    tr(W_j' inv([H^-1]_jj) W_j)), in 32 steps. Returns their indices, sorted."""
    w = np.linalg.solve(gram, cross)  # the best weights on all channels for these inputs
    inverse = np.linalg.inv(gram)
    alive = np.ones(channels, bool)
    step = max(1, math.ceil((channels - keep) / 32))  # 32 steps: 2048 channels in ~3 s
    while alive.sum() > keep:
        idx = np.flatnonzero(alive)
        feats = idx[:, None] * per + np.arange(per)  # [alive, per]
        blocks = inverse[feats[:, :, None], feats[:, None, :]]  # [alive, per, per]
        wj = w[feats]  # [alive, per, outputs]
        cost = np.einsum("jao,jab,jbo->j", wj, np.linalg.inv(blocks), wj)
        drop = idx[np.argsort(cost)[:min(step, alive.sum() - keep)]]
        f = (drop[:, None] * per + np.arange(per)).ravel()
        solve = np.linalg.solve(inverse[np.ix_(f, f)], np.hstack([w[f], inverse[f]]))
        w -= inverse[:, f] @ solve[:, :w.shape[1]]
        inverse -= inverse[:, f] @ solve[:, w.shape[1]:]
        w[f], inverse[f], inverse[:, f] = 0, 0, 0
        inverse[f, f] = 1.0  # keeps the dropped blocks invertible; they are never read again
        alive[drop] = False
    return np.flatnonzero(alive)


def _bias(model: onnx.ModelProto, second: onnx.NodeProto, consts: dict[str, np.ndarray]
          ) -> tuple[onnx.NodeProto, int, np.ndarray] | None:
    """Where the second layer's bias is, to be refit with its weights: a Conv's own (added as
    zeros when it has none), or the one Add of a constant right after a MatMul. None: no bias."""
    if second.op_type == "Conv":
        if len(second.input) < 3 or not second.input[2]:
            channels = consts[second.input[1]].shape[0]
            zeros = f"{second.name}/pruned_bias"
            model.graph.initializer.append(numpy_helper.from_array(np.zeros(channels, np.float32), zeros))
            while len(second.input) < 3:
                second.input.append("")
            second.input[2] = zeros
            consts[zeros] = np.zeros(channels, np.float32)
        return second, 2, consts[second.input[2]]
    readers = [n for n in model.graph.node if second.output[0] in n.input]
    if len(readers) != 1 or readers[0].op_type != "Add" or second.output[0] in {o.name for o in model.graph.output}:
        return None
    add = readers[0]
    index = 1 if add.input[0] == second.output[0] else 0
    value = consts.get(add.input[index])
    width = consts[second.input[1]].shape[1]
    if value is None or value.dtype != np.float32 or value.size != width or value.shape[-1] != width:
        return None
    return add, index, value


def _set_input(model: onnx.ModelProto, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
    """Give `node` a new constant at input `index`, under a name of its own: others reading
    the old one (shared scalars, a weight two nodes read) keep it."""
    name = f"{node.input[index]}/pruned"
    taken = {t.name for t in model.graph.initializer}
    while name in taken:
        name += "_"
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    node.input[index] = name


def _slice_input(model: onnx.ModelProto, node: onnx.NodeProto, index: int, consts: dict[str, np.ndarray],
                 kept: np.ndarray, axis: int) -> None:
    _set_input(model, node, index, np.take(consts[node.input[index]], kept, axis=axis))


def _drop_unused(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
