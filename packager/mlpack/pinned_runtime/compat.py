"""Whether a model can be read by an older onnxruntime, and the one rewrite that is safe. Pure.

A model written by a newer `onnx` carries a newer IR version than an older onnxruntime
reads ("Unsupported model IR version: 14, max supported IR version: 13"), even when it
uses nothing that version added. Lowering `ir_version` is safe exactly when the model
uses nothing newer: no data type, no opset and no proto feature the lower IR lacks. The
table below is onnx.proto's own history of what each IR version added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import onnx
from onnx import TensorProto, helper

# The first IR version of each data type that came after IR 8 (onnx.proto's comments).
_TYPE_SINCE_IR = {
    TensorProto.FLOAT8E4M3FN: 9, TensorProto.FLOAT8E4M3FNUZ: 9, TensorProto.FLOAT8E5M2: 9,
    TensorProto.FLOAT8E5M2FNUZ: 9,
    TensorProto.UINT4: 10, TensorProto.INT4: 10,
}
for _name, _ir in (("FLOAT4E2M1", 11), ("FLOAT8E8M0", 12), ("UINT2", 13), ("INT2", 13),
                   ("FLOAT6E2M3", 14), ("FLOAT6E3M2", 14)):
    if hasattr(TensorProto, _name):  # older onnx releases lack the newest types
        _TYPE_SINCE_IR[getattr(TensorProto, _name)] = _ir


@dataclass(frozen=True)
class Limits:
    """What one onnxruntime release reads: the highest IR version and ai.onnx opset."""

    package: str
    version: str
    max_ir_version: int
    max_opset: int

    @property
    def runtime(self) -> str:
        return f"{self.package} {self.version}"


@dataclass(frozen=True)
class Fit:
    """How a model fits a runtime: as it is, after lowering its IR version, or not at all."""

    ir_version: int  # the IR version the shipped model carries
    rewrite: str = ""  # what was changed, in words, when something was
    problem: str = ""  # why the runtime cannot read the model, when it cannot

    @property
    def fits(self) -> bool:
        return not self.problem


def min_ir_version(model: onnx.ModelProto) -> tuple[int, str]:
    """The lowest IR version that can express this model, and what sets it."""
    needs = [(helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True), "its opsets")]
    for elem_type in sorted(set(_elem_types(model))):
        if elem_type in _TYPE_SINCE_IR:
            needs.append((_TYPE_SINCE_IR[elem_type], f"data type {TensorProto.DataType.Name(elem_type)}"))
    if any(f.overload for f in model.functions):
        needs.append((10, "overloaded functions"))
    if len(model.configuration):
        needs.append((11, "multi-device configurations"))
    return max(needs)


def fit(model: onnx.ModelProto, limits: Limits) -> Fit:
    """Check a model against what a runtime reads; lower its IR version when that is safe."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset > limits.max_opset:
        return Fit(model.ir_version, problem=(
            f"the model uses opset {opset} and {limits.runtime} reads opset {limits.max_opset} at most"))
    if model.ir_version <= limits.max_ir_version:
        return Fit(model.ir_version)
    needed, why = min_ir_version(model)
    if needed > limits.max_ir_version:
        return Fit(model.ir_version, problem=(
            f"the model is ONNX IR version {model.ir_version} and needs at least {needed} ({why}); "
            f"{limits.runtime} reads IR version {limits.max_ir_version} at most"))
    return Fit(limits.max_ir_version, rewrite=(
        f"IR version {model.ir_version} -> {limits.max_ir_version}: {limits.runtime} reads "
        f"{limits.max_ir_version} at most, and the model uses nothing newer (it needs IR {needed}, for {why})"))


def _elem_types(model: onnx.ModelProto) -> Iterator[int]:
    """Every tensor element type the model's graphs and functions name."""
    def of_type(type_proto: onnx.TypeProto) -> Iterator[int]:
        kind = type_proto.WhichOneof("value")
        if kind in ("tensor_type", "sparse_tensor_type"):
            yield getattr(type_proto, kind).elem_type
        elif kind == "sequence_type":
            yield from of_type(type_proto.sequence_type.elem_type)
        elif kind == "optional_type":
            yield from of_type(type_proto.optional_type.elem_type)
        elif kind == "map_type":
            yield type_proto.map_type.key_type
            yield from of_type(type_proto.map_type.value_type)

    def of_attribute(attr: onnx.AttributeProto) -> Iterator[int]:
        if attr.type == onnx.AttributeProto.INT and attr.name in ("to", "dtype", "output_dtype"):
            yield attr.i
        if attr.HasField("t"):
            yield attr.t.data_type
        for tensor in attr.tensors:
            yield tensor.data_type
        if attr.HasField("g"):
            yield from of_graph(attr.g)
        for graph in attr.graphs:
            yield from of_graph(graph)

    def of_nodes(nodes) -> Iterator[int]:
        for node in nodes:
            for attr in node.attribute:
                yield from of_attribute(attr)

    def of_graph(graph: onnx.GraphProto) -> Iterator[int]:
        for tensor in graph.initializer:
            yield tensor.data_type
        for sparse in graph.sparse_initializer:
            yield sparse.values.data_type
        for info in (*graph.input, *graph.output, *graph.value_info):
            yield from of_type(info.type)
        yield from of_nodes(graph.node)

    yield from of_graph(model.graph)
    for function in model.functions:
        yield from of_nodes(function.node)
