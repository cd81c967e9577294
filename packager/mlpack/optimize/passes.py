"""Graph rewrites and quantization recipes, each a function from one .onnx file to another.

Targets name them in `[optimize]` (see targets/*.toml and docs/optimization.md):
`passes` keep the model in float and run before everything else; `variants` make the
smaller or faster candidates that the accuracy gate then checks. Each function writes a
model stored as its input is (weights inline, or external in `NAME.onnx.data`) and leaves
its input untouched.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from ..model.files import EXTERNAL_THRESHOLD, data_file, model_paths, save_model, stored_external
from .data import EvalData

# The quantizers log every node they skip at INFO; the report says what matters.
for _name in ("onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PORTABLE_GRAPH_LEVELS = ("basic", "extended")
PER_CHANNEL_QDQ_OPSET = 13
# Block-quantized Gather (GatherBlockQuantized + DequantizeLinear with block_size) needs opset 21.
BLOCKED_QUANT_OPSET = 21
# The layers static int8 quantizes: those with weights, where int8 kernels pay most. Quantizing
# the Add, Mul, Clip, Resize... between them too (onnxruntime's default) rounds every activation
# again, and reads text worse: on PP-OCRv4's detector and recognizer (`python -m
# benchmarks.vision`) that default fails the gate on held-out images (text-mask IoU 0.93, 53% of
# lines read as float reads them), and on this 2-core x86 host it was slower than float too.
STATIC_INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Ops static int8 also runs in int8 when they read a quantized layer's output: they add no
# rounding of their own (a Relu's range becomes the range of the layer's Q; a MaxPool keeps its
# input's scale), and they keep onnxruntime's int8 path unbroken (QLinearConv -> int8 MaxPool,
# with no Dequantize/Quantize between): on a Conv-Relu-MaxPool net that was 1.95 ms -> 1.41 ms
# at batch 32 against float's 1.09 ms (benchmarks.optimize_bench's small conv net).
INT8_PASS_THROUGH_OPS = ("Relu", "MaxPool")
# What dynamic int8 quantizes: quantize_dynamic's ops but Conv, which onnxruntime would run as
# ConvInteger, slower than the float Conv (PP-OCRv4's text detector: 4.7x, BENCHMARKS.md);
# static-int8 quantizes convolutions. Transpose is quantized only after a quantized node.
DYNAMIC_INT8_OPS = ("MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization")
INT4_IR_VERSION = 10  # the first IR version with 4-bit tensor types


@contextlib.contextmanager
def _quiet():
    """The quantizers warn on the root logger (e.g. "consider pre-processing"); mlpack's report
    says what matters, so those lines are held back while a recipe runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _save(model: onnx.ModelProto, path: Path, like: Path) -> Path:
    """Save a candidate stored as its source `like` is: inline, or external (path.name + ".data")
    when the source kept its weights external or the model is over protobuf's 2 GB."""
    return save_model(model, path, external=stored_external(like))


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _load_at_opset(src: Path, opset: int) -> onnx.ModelProto:
    """The model, converted to `opset` when it is older. onnx's converter serializes what it
    converts, so an external model's graph goes through it alone and its weights are read
    in after (past 2 GB, the whole model fits in no one protobuf message)."""
    from onnx import version_converter

    model = onnx.load(str(src), load_external_data=False)
    if _opset(model) < opset:
        model = version_converter.convert_version(model, opset)
    onnx.load_external_data_for_model(model, str(src.parent))
    return model


# ---- float passes ---------------------------------------------------------------


def prune(src: Path, dst: Path) -> Path:
    """Remove what the graph does not need: constant-fold, drop dead nodes and unused
    initializers, and merge duplicate constants (onnxscript's optimizer and onnx-ir passes)."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    import onnxscript.optimizer

    proto = onnx.load(str(src))
    map_types = _hide_map_types(proto)
    model = ir.serde.deserialize_model(proto)
    # Functions are inlined and constants folded only where inputs are small (the defaults),
    # so large weights are never duplicated into folded copies.
    onnxscript.optimizer.optimize(model)
    for step in (
        common.LiftConstantsToInitializersPass(size_limit=0),
        common.DeduplicateHashedInitializersPass(size_limit=1 << 40),
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedOpsetsPass(),
    ):
        step(model)
    pruned = ir.serde.serialize_model(model)
    _restore_types(pruned, map_types)
    return _save(pruned, dst, like=src)


def _hide_map_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """onnx-ir reads no map types (ZipMap's seq(map(...)) outputs, DictVectorizer's inputs):
    take them off the graph's inputs, outputs and value infos, by name, to put back after."""
    hidden: dict[str, onnx.TypeProto] = {}
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if "map_type" in str(value.type):  # a map, or a sequence or optional of maps
            hidden[value.name] = onnx.TypeProto.FromString(value.type.SerializeToString())
            value.ClearField("type")
    return hidden


def _restore_types(model: onnx.ModelProto, types: dict[str, onnx.TypeProto]) -> None:
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.name in types:
            value.type.CopyFrom(types[value.name])


def lift_constants(model: onnx.ModelProto) -> int:
    """Tensors held by `Constant` nodes (paddle2onnx writes every weight so) become initializers,
    in place: quantizers quantize initializer weights only, and onnxruntime's leave Constant-node
    weights float. Returns how many were lifted. The function is unchanged."""
    if model.ir_version < 4:  # initializers had to be graph inputs then
        return 0
    outputs = {o.name for o in model.graph.output}
    kept = []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR),
                     None) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if value is None or node.output[0] in outputs:
            kept.append(node)
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        model.graph.initializer.append(tensor)
    lifted = len(model.graph.node) - len(kept)
    if lifted:
        del model.graph.node[:]
        model.graph.node.extend(kept)
    return lifted


def graph_optimize(src: Path, dst: Path, level: str = "basic") -> Path:
    """onnxruntime's graph optimizations, saved offline.

    Only levels that stay portable are allowed: "basic" keeps standard ONNX ops (any
    provider, any runtime); "extended" adds onnxruntime fusions that every CPU and CUDA
    build runs. Layout optimizations ("all") are tied to the machine that ran them, so
    onnxruntime applies those at load on the target instead.
    """
    import onnxruntime as ort

    from ..runtime.config import session_options

    if level not in PORTABLE_GRAPH_LEVELS:
        raise ValueError(f"graph level {level!r} is not portable; use one of {', '.join(PORTABLE_GRAPH_LEVELS)}")
    options = session_options({"graph_optimization_level": level})
    options.optimized_model_filepath = str(dst)
    external = stored_external(src)
    if external:  # a model over 2 GB cannot be written inline: weights beside it, as they came
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         data_file(dst).name)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                         str(EXTERNAL_THRESHOLD))
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    # Saved again as mlpack stores candidates (onnxruntime's own choice of inline or not aside).
    return _save(onnx.load(str(dst)), dst, like=src)


# ---- quantized variants ----------------------------------------------------------


def _quant_type(weight_type: str):
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[weight_type]


def dynamic_int8(
    src: Path,
    dst: Path,
    *,
    weight_type: str = "qint8",
    exclude: Sequence[str] = (),
    op_types: Sequence[str] | None = None,
    reduce_range: bool = False,
    per_channel: bool = True,
) -> Path:
    """Weights int8 per output channel (one scale per weight tensor with `per_channel=False`),
    activations quantized at run time (no calibration). `op_types` defaults to
    DYNAMIC_INT8_OPS: convolutions stay float.

    `reduce_range` keeps weights to 7 bits, which avoids the int16 overflow of the u8 x s8
    pair sums in x86 AVX2 kernels (CPUs without VNNI) when both operands use their full range.

    Self-attention blocks are first fused into onnxruntime's `Attention` op (attention.py), which
    quantizes as `QAttention`; a block whose projections `exclude` keeps float is left unfused.
    """
    from onnxruntime.quantization import quantize_dynamic

    from .attention import fuse_attention

    op_types = list(op_types or DYNAMIC_INT8_OPS)
    start = src
    # The graph alone first: external weights (a model over 2 GB) are read only where attention may be.
    model = onnx.load(str(src), load_external_data=False)
    if "Attention" in op_types and any(n.op_type == "Softmax" for n in model.graph.node):
        onnx.load_external_data_for_model(model, str(src.parent))
        if fuse_attention(model, keep_float=exclude):
            start = _save(model, dst.with_name(dst.stem + "-attention.onnx"), like=src)
    del model
    try:
        with _quiet():
            quantize_dynamic(
                str(start), str(dst),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=_quant_type(weight_type),
                nodes_to_exclude=list(exclude),
                op_types_to_quantize=op_types,
                # Nodes after fused or contrib ops have no inferred type; they are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                use_external_data_format=stored_external(src),
            )
    finally:
        if start != src:
            for path in model_paths(start):
                path.unlink(missing_ok=True)
    return _save(onnx.load(str(dst)), dst, like=src)


def attention_fused(path: Path) -> str:
    """How many self-attention blocks of the quantized model `path` dynamic_int8 fused, in words
    for a recipe ("" when none)."""
    model = onnx.load(str(path), load_external_data=False)
    count = sum(n.op_type in ("QAttention", "Attention") for n in model.graph.node)
    return (f"; self-attention fused into onnxruntime's Attention first ({count} layer{'s' * (count != 1)}, "
            "run as QAttention)" if count else "")


def static_int8_nodes(model: onnx.ModelProto) -> list[str] | None:
    """The nodes static int8 quantizes: every layer with weights, and each pass-through op
    whose input a quantized node makes (in graph order, which is topological). None when a node
    of those types has no name to list it by: then the layers alone are quantized, by op type."""
    graph = model.graph
    if any(not node.name for node in graph.node if node.op_type in (*STATIC_INT8_OPS, *INT8_PASS_THROUGH_OPS)):
        return None
    made_by = {out: node.name for node in graph.node for out in node.output}
    chosen: set[str] = set()
    for node in graph.node:
        if node.op_type in STATIC_INT8_OPS or (
                node.op_type in INT8_PASS_THROUGH_OPS and node.input and made_by.get(node.input[0]) in chosen):
            chosen.add(node.name)
    return [node.name for node in graph.node if node.name in chosen]


def static_int8(src: Path, dst: Path, calibration: EvalData, *, weight_type: str = "qint8",
                exclude: Sequence[str] = (), fixed_batch: int | None = None, ranges: Path | None = None) -> Path:
    """QDQ int8 with activation ranges calibrated on data: how convolutions get int8. Whether that
    is faster than float depends on the CPU and the model; the pick times it.

    Calibration rows go one at a time, or `fixed_batch` at a time for a model that fixes its batch size.
    `ranges`: a file the calibrated ranges are kept in and read back from when it exists, so
    requantizing `src` with other nodes excluded (mixed-int8's trials) does not calibrate again
    (the ranges depend on the model and the rows, not on what is excluded)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = calibration.feeds(fixed_batch or 1, exact=fixed_batch is not None)

        def get_next(self):
            return next(self._feeds, (None, 0))[0]

    converted = None
    if _opset(onnx.load(str(src), load_external_data=False)) < PER_CHANNEL_QDQ_OPSET:
        # per-channel DequantizeLinear (axis) needs opset 13
        converted = _save(_load_at_opset(src, PER_CHANNEL_QDQ_OPSET), dst.with_name(dst.stem + "-opset13.onnx"),
                          like=src)
    nodes = static_int8_nodes(onnx.load(str(converted or src), load_external_data=False))
    with _quiet():
        quantize_static(
            str(converted or src), str(dst), Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=_quant_type(weight_type),
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=list(exclude),
            op_types_to_quantize=[*STATIC_INT8_OPS, *(INT8_PASS_THROUGH_OPS if nodes else ())],
            nodes_to_quantize=nodes,
            # With nodes kept float, a Relu or Clip stays a node (not folded into the range of the
            # Q after it), so that the tensor a kept node reads instead of that Q is float's own.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "QDQKeepRemovableActivations": bool(exclude)},
            use_external_data_format=stored_external(src),
            **_ranges_cache(quantize_static, ranges),
        )
    if converted:
        for path in model_paths(converted):
            path.unlink()
    quantized = onnx.load(str(dst))
    float_inputs(quantized, set(exclude))
    return _save(quantized, dst, like=src)


def _ranges_cache(quantize_static, ranges: Path | None) -> dict[str, str]:
    """quantize_static's calibration cache argument, where this onnxruntime has it (1.32 and later);
    older ones calibrate on every call."""
    import inspect

    if ranges is None or "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}
    return {"calibration_cache_path": str(ranges)}


def float_inputs(model: onnx.ModelProto, nodes: set[str]) -> None:
    """Nodes kept float read float tensors, in place. The QDQ quantizer still rounds a tensor that
    a kept node shares with quantized ones (a Q/DQ pair after its producer), and then
    onnxruntime's WeightBiasQuantization, at load, quantizes the float weight of any Conv or Gemm
    whose input comes from DequantizeLinear: the node would not be float at all. A kept node
    reads the tensor before the pair instead; pairs nobody reads any more are removed."""
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name not in nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    while True:
        read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def embedding_tables(model: onnx.ModelProto, min_elements: int = 1 << 16) -> list[str]:
    """Gather nodes that look up rows of a large constant table (token or item embeddings)."""
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    return [
        n.name for n in model.graph.node
        if n.op_type == "Gather" and n.input[0] in sizes and sizes[n.input[0]] >= min_elements
    ]


def int8_tables(src: Path, dst: Path, *, block_size: int = 128) -> Path:
    """Embedding tables to int8 with one scale per block of `block_size` values in a row.

    onnxruntime's dynamic quantization gives a whole table one scale, so rare tokens with
    small vectors lose most of their bits; scales per row block keep them. The lookup
    gathers int8 rows and their scales, then dequantizes only the rows it took
    (standard ONNX ops: Gather, Gather, DequantizeLinear with block_size, opset 21).
    """
    from onnx import helper, numpy_helper

    model = _load_at_opset(src, BLOCKED_QUANT_OPSET)
    inits = {t.name: t for t in model.graph.initializer}
    targets = set(embedding_tables(model))
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    nodes = []
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        table = inits.get(node.input[0]) if node.name in targets else None
        if table is None or axis != 0 or len(table.dims) != 2 or users[node.input[0]] != 1:
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(table).astype(np.float32)
        rows, cols = weights.shape
        block = block_size if cols % block_size == 0 else cols
        blocks = weights.reshape(rows, cols // block, block)
        scale = np.abs(blocks).max(axis=2) / 127.0
        scale[scale == 0] = 1.0
        quantized = np.clip(np.round(blocks / scale[:, :, None]), -127, 127).astype(np.int8).reshape(rows, cols)
        name = table.name
        model.graph.initializer.remove(table)
        model.graph.initializer.extend([
            numpy_helper.from_array(quantized, f"{name}_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
        ])
        ids, out = node.input[1], node.output[0]
        nodes += [
            helper.make_node("Gather", [f"{name}_int8", ids], [f"{out}_int8"], name=f"{node.name}/int8", axis=0),
            helper.make_node("Gather", [f"{name}_scale", ids], [f"{out}_scale"], name=f"{node.name}/scale", axis=0),
            helper.make_node("DequantizeLinear", [f"{out}_int8", f"{out}_scale"], [out],
                             name=f"{node.name}/dequantize", axis=-1, block_size=block),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _save(model, dst, like=src)
    onnx.checker.check_model(str(dst))  # by path: a model over 2 GB cannot be checked in memory
    return dst


def int4_tables(src: Path, dst: Path, *, block_size: int = 32) -> Path:
    """Embedding tables to 4 bits in blocks of `block_size` (GatherBlockQuantized).

    A lookup table costs no compute, only size and memory: 4 bits per weight plus one
    scale per block. Everything else stays as it is.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = _load_at_opset(src, BLOCKED_QUANT_OPSET)
    model.ir_version = max(model.ir_version, INT4_IR_VERSION)  # as the quantizer would, without its warning
    quantizer = MatMulNBitsQuantizer(
        model, bits=4, block_size=block_size, is_symmetric=True,
        op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),),
    )
    with _quiet():
        quantizer.process()
    return _save(quantizer.model.model, dst, like=src)


def fp16(src: Path, dst: Path) -> Path:
    """Weights and arithmetic in float16, inputs and outputs kept float32 for callers."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    import onnx_ir as ir
    from onnx_ir.passes.common import TopologicalSortPass

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    # The converter appends the input casts after their users; the checker wants them sorted.
    ir_model = ir.serde.deserialize_model(model)
    TopologicalSortPass()(ir_model)
    return _save(ir.serde.serialize_model(ir_model), dst, like=src)


# The weight input of each op stored_int8 stores in int8, and the axis of its output channels
# (one scale each; an embedding table's rows); Gemm's depends on transB.
STORED_INT8_WEIGHTS = {"MatMul": (1, -1), "Gemm": (1, None), "Conv": (1, 0), "ConvTranspose": (1, 1), "Gather": (0, 0)}
STORED_INT8_MIN_ELEMENTS = 256  # below this a tensor's scales and two nodes save next to nothing


def stored_int8_weights(model: onnx.ModelProto) -> dict[str, int]:
    """The float32 weight initializers stored_int8 would store in int8, with their channel axis."""
    inits = {t.name: t for t in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}  # an initializer a caller may override stays as it is
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in STORED_INT8_WEIGHTS or node.domain not in ("", "ai.onnx"):
            continue
        index, axis = STORED_INT8_WEIGHTS[node.op_type]
        name = node.input[index] if len(node.input) > index else ""
        tensor = inits.get(name)
        if (tensor is None or name in graph_inputs or name in found or len(tensor.dims) < 2
                or tensor.data_type != onnx.TensorProto.FLOAT or np.prod(tensor.dims) < STORED_INT8_MIN_ELEMENTS):
            continue
        if axis is None:  # Gemm: B is (K, N), or (N, K) when transposed
            axis = 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
        if node.op_type == "Gather" and any(a.name == "axis" and a.i % len(tensor.dims) for a in node.attribute):
            continue  # a lookup of columns, not of rows
        found[name] = axis % len(tensor.dims)
    return found


def stored_int8(src: Path, dst: Path, *, keep: Sequence[str] = (), only: Sequence[str] | None = None,
                loaded: onnx.ModelProto | None = None) -> Path:
    """Weights stored in int8 with one scale per output channel, widened back to float32 by a
    Cast and a Mul on constants, which onnxruntime's constant folding (every optimization level
    but 'disable') runs once when it opens the model: the file has int8's size, the session
    float's graph, arithmetic and speed. A DequantizeLinear would read the same, but onnxruntime
    keeps those unfolded for its int8 kernels (1.32 runs a weight-only one as MatMulNBits, which
    computes per request; tests/test_optimize_stored.py reads back both loaded graphs), so plain
    Cast and Mul it is. Memory at run time is float's: only the file shrinks.

    `keep`: weights left float (the ones whose rounding hurts most); `only`: store just these;
    `loaded`: `src` as already read (left untouched), for callers that make many from one source."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(src)) if loaded is None else onnx.ModelProto()
    if loaded is not None:
        model.CopyFrom(loaded)  # a copy in memory: over 2 GB, a model cannot be serialized to copy it
    weights = {name: axis for name, axis in stored_int8_weights(model).items()
               if name not in keep and (only is None or name in only)}
    kept = [t for t in model.graph.initializer if t.name not in weights]
    added, widen = [], []
    for tensor in model.graph.initializer:
        if tensor.name not in weights:
            continue
        values = numpy_helper.to_array(tensor)
        axis = weights[tensor.name]
        others = tuple(a for a in range(values.ndim) if a != axis)
        scale = np.abs(values).max(axis=others, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        stored = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        name = tensor.name
        added += [numpy_helper.from_array(stored, f"{name}_int8"),
                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")]
        widen += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_widened"], name=f"{name}/widen",
                                   to=onnx.TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{name}_widened", f"{name}_scale"], [name], name=f"{name}/scale")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + added)
    nodes = widen + list(model.graph.node)  # before every reader: the names they read are unchanged
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _save(model, dst, like=src)
    onnx.checker.check_model(str(dst))  # by path: a model over 2 GB cannot be checked in memory
    return dst
