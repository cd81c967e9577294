"""Fuse BERT-style self-attention into onnxruntime's `Attention` op, before dynamic int8.

onnxruntime fuses attention only where its transformers optimizer recognizes the graph, which
is the form PyTorch's BERT export writes. A model written otherwise keeps a dozen nodes a
layer: three projections, four Reshape/Transpose copies of the activations, the scale, the
mask, Softmax and two batched MatMuls. all-MiniLM-L6-v2 built from its weights
(benchmarks/minilm_model.py) is one such model: the optimizer fuses no Attention there.
One `Attention` node (com.microsoft) runs the three projections as one GEMM and the rest in
one kernel, and dynamic int8 quantizes it as `QAttention` (an int8 GEMM).

What is matched, for each Softmax (any other shape is left as it is):

    scores  = MatMul(Q, K) * c  (or / c)  [+ mask bias]
    context = MatMul(Softmax(scores, axis=-1), V) -> Transpose(0, 2, 1, 3) -> Reshape -> [batch, seq, hidden]
    Q, V    = Transpose(0, 2, 1, 3)(Reshape(MatMul(x, W) + b))   K: the same with perm (0, 2, 3, 1)

with one `x` for the three, constant weights and biases, and the mask bias, if any, made as
`(1 - Unsqueeze(Cast(mask))) * f` from a [batch, seq] input: `Attention` computes the same
function (its `scale` c, its `mask_filter_value` f, the mask as it is given), so the gate
sees only float rounding.
"""

from __future__ import annotations

from typing import Collection

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
_Q_PERM, _K_PERM = [0, 2, 1, 3], [0, 2, 3, 1]


def fuse_attention(model: onnx.ModelProto, keep_float: Collection[str] = ()) -> int:
    """Rewrite `model` in place; returns how many attention blocks became `Attention` nodes.
    A block whose projections are among `keep_float` (node names) is left alone, so they stay
    float as asked."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    graph = OnnxModel(model)
    fused = 0
    mask_cache: dict[str, str] = {}
    for softmax in graph.get_nodes_by_op_type("Softmax"):
        block = _match(graph, softmax)
        if block is None or any(name in keep_float for name in block.projections):
            continue
        mask = _mask_index(graph, block.mask_source, mask_cache) if block.mask_source else ""
        name = graph.create_node_name("Attention", "Attention_")
        weight = np.concatenate([block.weights[part] for part in "qkv"], axis=1)
        bias = np.concatenate([block.biases[part] for part in "qkv"])
        graph.add_initializer(numpy_helper.from_array(weight.astype(np.float32), f"{name}.qkv_weight"))
        graph.add_initializer(numpy_helper.from_array(bias.astype(np.float32), f"{name}.qkv_bias"))
        inputs = [block.x, f"{name}.qkv_weight", f"{name}.qkv_bias"] + ([mask] if mask else [])
        attrs = {"num_heads": block.heads, "scale": block.scale}
        if block.mask_filter is not None:
            attrs["mask_filter_value"] = block.mask_filter
        graph.add_node(helper.make_node("Attention", inputs, [block.output], name=name, domain=MS_DOMAIN, **attrs))
        graph.remove_nodes(block.nodes)
        fused += 1
    if fused:
        if not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        graph.prune_graph(allow_remove_graph_inputs=False)  # the mask's float path, if only attention read it
        graph.topological_sort()
    return fused


class _Block:
    def __init__(self) -> None:
        self.x = ""
        self.output = ""
        self.heads = 0
        self.scale = 0.0
        self.weights: dict[str, np.ndarray] = {}
        self.biases: dict[str, np.ndarray] = {}
        self.projections: list[str] = []
        self.nodes: list[onnx.NodeProto] = []
        self.mask_source = ""  # the [batch, seq] mask the bias is made from
        self.mask_filter: float | None = None


def _scalar(graph, name: str) -> float | None:
    value = graph.get_constant_value(name)
    return None if value is None or np.size(value) != 1 else float(np.ravel(value)[0])


def _perm(graph, node) -> list[int]:
    return list(graph.get_node_attribute(node, "perm") or [])


def _match(graph, softmax) -> _Block | None:
    block = _Block()
    producers = graph.output_name_to_node()  # built once a block: each lookup below reads it
    axis = graph.get_node_attribute(softmax, "axis")
    if axis not in (-1, 3):
        return None
    scores = graph.get_parent(softmax, 0, producers)
    if scores is not None and scores.op_type == "Add":  # the mask bias
        for i in (0, 1):
            scaled = graph.get_parent(scores, i, producers)
            if scaled is not None and scaled.op_type in ("Mul", "Div"):
                if not _mask(graph, producers, scores.input[1 - i], block):
                    return None
                block.nodes.append(scores)
                scores = scaled
                break
        else:
            return None
    if scores is None or scores.op_type not in ("Mul", "Div"):
        return None
    c = _scalar(graph, scores.input[1])
    qk = graph.get_parent(scores, 0, producers)
    if c is None or c == 0 or qk is None or qk.op_type != "MatMul":
        return None
    block.scale = c if scores.op_type == "Mul" else 1.0 / c
    children = graph.get_children(softmax)
    if len(children) != 1 or children[0].op_type != "MatMul" or children[0].input[0] != softmax.output[0]:
        return None
    context = children[0]
    merge = graph.match_child_path(context, ["Transpose", "Reshape"], exclude=[])
    if merge is None or _perm(graph, merge[0]) != _Q_PERM:
        return None
    merged = graph.get_constant_value(merge[1].input[1])  # Attention's output is [batch, seq, hidden]
    if merged is None or len(merged) != 3:
        return None
    for part, tensor, perm in (("q", qk.input[0], _Q_PERM), ("k", qk.input[1], _K_PERM), ("v", context.input[1], _Q_PERM)):
        if not _projection(graph, producers, tensor, perm, part, block):
            return None
    hidden = block.weights["q"].shape[1]
    if not (block.weights["q"].shape == block.weights["k"].shape == block.weights["v"].shape) or \
            hidden % block.heads or int(merged[2]) not in (hidden, -1):
        return None
    # Every node between x and the output goes, so none may feed anything else.
    block.nodes += [scores, qk, softmax, context, *merge]
    inner = {out for node in block.nodes[:-1] for out in node.output}
    consumers = graph.input_name_to_nodes()
    if any(child not in block.nodes for out in inner for child in consumers.get(out, [])):
        return None
    if any(out in graph.get_graphs_output_names() for out in inner):
        return None
    block.output = merge[-1].output[0]
    return block


def _projection(graph, producers: dict, tensor: str, perm: list[int], part: str, block: _Block) -> bool:
    """Transpose(perm)(Reshape([0, 0, heads, head], MatMul(x, W) + b)): W, b and x into `block`."""
    transpose = producers.get(tensor)
    if transpose is None or transpose.op_type != "Transpose" or _perm(graph, transpose) != perm:
        return False
    path = graph.match_parent_path(transpose, ["Reshape", "Add"], [0, 0], producers)
    if path is None:
        return False
    reshape, add = path
    shape = graph.get_constant_value(reshape.input[1])  # [batch, seq, heads, head size]
    if shape is None or len(shape) != 4 or int(shape[2]) <= 0 or block.heads not in (0, int(shape[2])):
        return False
    for i in (0, 1):
        matmul = graph.get_parent(add, i, producers)
        if matmul is None or matmul.op_type != "MatMul":
            continue
        weight, bias = graph.get_constant_value(matmul.input[1]), graph.get_constant_value(add.input[1 - i])
        if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[1],) \
                or int(shape[3]) not in (weight.shape[1] // int(shape[2]), -1):
            return False
        if block.x and matmul.input[0] != block.x:
            return False
        block.x, block.heads = matmul.input[0], int(shape[2])
        block.weights[part], block.biases[part] = weight, bias
        block.projections.append(matmul.name)
        block.nodes += [transpose, reshape, add, matmul]
        return True
    return False


def _mask(graph, producers: dict, bias: str, block: _Block) -> bool:
    """`(1 - Unsqueeze(Cast(mask), axes [1, 2])) * f`: the additive mask of a [batch, seq] input of 1s and 0s."""
    mul = producers.get(bias)
    if mul is None or mul.op_type != "Mul":
        return False
    path = graph.match_parent_path(mul, ["Sub", "Unsqueeze", "Cast"], [0, 1, 0], producers)
    f = _scalar(graph, mul.input[1])
    if path is None or f is None or _scalar(graph, path[0].input[0]) != 1.0:
        return False
    unsqueeze = path[1]
    axes = graph.get_node_attribute(unsqueeze, "axes")
    if axes is None and len(unsqueeze.input) > 1:
        axes = graph.get_constant_value(unsqueeze.input[1])
    if axes is None or sorted(int(a) for a in np.ravel(axes)) != [1, 2]:
        return False
    graph_input = graph.find_graph_input(path[2].input[0])
    if graph_input is not None and len(graph_input.type.tensor_type.shape.dim) != 2:
        return False  # Attention reads a [batch, seq] mask
    block.mask_source, block.mask_filter = path[2].input[0], f
    return True


def _mask_index(graph, source: str, cache: dict[str, str]) -> str:
    """The mask as `Attention` reads it: int32 [batch, seq], one Cast shared by every layer."""
    if source not in cache:
        cache[source] = f"{source}_int32"
        graph.add_node(helper.make_node("Cast", [source], [cache[source]], to=TensorProto.INT32,
                                        name=f"{source}_int32"))
    return cache[source]
