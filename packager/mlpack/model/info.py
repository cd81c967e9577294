"""Inspect an ONNX model: is it valid, does onnxruntime load it, what is its signature."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from pydantic import BaseModel, model_serializer

from ..errors import InputError
from .locale_ops import LocaleNode, locale_nodes, make_portable
from .files import external_files

Dim = int | str | None  # a fixed size, a symbolic name, or unknown
# A graph input with an initializer of the same name is an input with a default (ONNX IR
# 4+). Up to this many values it is a setting a request may pass (a threshold, a scale);
# larger, it is a weight an exporter kept among the inputs, not part of the signature.
MAX_DEFAULT_VALUES = 1024


class TensorSpec(BaseModel):
    name: str
    dtype: str  # numpy dtype name ("float32"; "object" for strings), or the ONNX type for non-tensors ("seq(map(int64,tensor(float)))")
    shape: list[Dim] | None  # None when the rank itself is unknown
    optional: bool = False  # the request may leave it out: an ONNX optional input, or one with a default

    @model_serializer(mode="wrap")
    def _optional_only_when_true(self, handler):
        # Written only where it says something: manifests and runtime.json of models
        # without optional inputs read as before.
        data = handler(self)
        if not self.optional:
            data.pop("optional", None)
        return data

    @property
    def is_tensor(self) -> bool:
        return not self.dtype.startswith(("seq", "map", "optional"))

    @property
    def is_string(self) -> bool:
        return self.dtype == "object"

    def type_text(self) -> str:
        """The dtype as a person reads it: "string" for string tensors."""
        return "string" if self.is_string else self.dtype

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.shape or []) if not isinstance(d, int)]

    def shape_text(self) -> str:
        if self.shape is None:
            return "any shape"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


class Signature(BaseModel):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def dynamic_batch(self) -> bool:
        """True when every required input's first axis is free: requests can be batched together."""
        required = [t for t in self.inputs if not t.optional]
        return bool(required) and all(t.shape and not isinstance(t.shape[0], int) for t in required)


class ExternalFile(BaseModel):
    name: str  # relative to the model file
    size_bytes: int


class ModelInfo(BaseModel):
    path: Path
    sha256: str
    size_bytes: int  # the model file and its external data together
    opset: int
    ir_version: int
    producer: str
    external_data: list[str]
    external_files: list[ExternalFile] = []
    locale_nodes: list[LocaleNode] = []  # operators that need a C library locale
    defaults: dict[str, list] = {}  # optional inputs with a default: their values (flattened)
    classes: dict[str, list[int | str]] = {}  # ZipMap outputs: their class labels, in column order
    operators: list[str] = []  # operator types, sorted ("Conv"; "ai.onnx.ml/ZipMap" outside the default domain)
    signature: Signature


def sample_inputs(signature: Signature) -> dict[str, list]:
    """A request's inputs the model accepts, as JSON: zeros (empty strings for string
    tensors), free axes of size 1; optional inputs left out."""
    inputs = {}
    for spec in signature.inputs:
        if spec.optional:
            continue
        if not spec.is_tensor:  # a map, or a sequence: empty
            inputs[spec.name] = {} if spec.dtype.startswith("map(") else []
            continue
        shape = [d if isinstance(d, int) else 1 for d in (spec.shape or [1])]
        inputs[spec.name] = np.full(shape, "", dtype=object).tolist() if spec.is_string \
            else np.zeros(shape, dtype=spec.dtype).tolist()
    return inputs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _type_text(type_proto: onnx.TypeProto) -> str:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({helper.tensor_dtype_to_string(type_proto.tensor_type.elem_type).removeprefix('TensorProto.').lower()})"
    if kind == "sequence_type":
        return f"seq({_type_text(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = helper.tensor_dtype_to_string(type_proto.map_type.key_type).removeprefix("TensorProto.").lower()
        return f"map({key},{_type_text(type_proto.map_type.value_type)})"
    return kind or "unknown"


def _tensor_spec(value: onnx.ValueInfoProto, optional: bool = False) -> TensorSpec:
    type_proto = value.type
    if type_proto.WhichOneof("value") == "optional_type":  # optional(T): T, and the request may omit it
        type_proto, optional = type_proto.optional_type.elem_type, True
    if type_proto.WhichOneof("value") != "tensor_type":
        return TensorSpec(name=value.name, dtype=_type_text(type_proto), shape=None, optional=optional)
    tensor = type_proto.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    if not tensor.HasField("shape"):
        return TensorSpec(name=value.name, dtype=dtype, shape=None, optional=optional)
    dims: list[Dim] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorSpec(name=value.name, dtype=dtype, shape=dims, optional=optional)


def input_defaults(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Graph inputs with a default a request may override: an initializer of the same name,
    in an IR 4+ model, of at most MAX_DEFAULT_VALUES values. (Before IR 4 every weight had to
    be listed as an input, so those are weights.)"""
    if model.ir_version < 4:
        return {}
    inputs = {v.name for v in model.graph.input}
    return {t.name: t for t in model.graph.initializer
            if t.name in inputs and int(np.prod(t.dims)) <= MAX_DEFAULT_VALUES}


def map_classes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """Graph outputs made by ZipMap (skl2onnx's classifier probabilities): their class labels."""
    outputs = {o.name for o in model.graph.output}
    classes: dict[str, list[int | str]] = {}
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.output[0] in outputs:
            for attribute in node.attribute:
                if attribute.name == "classlabels_int64s":
                    classes[node.output[0]] = sorted(int(v) for v in attribute.ints)
                elif attribute.name == "classlabels_strings":
                    classes[node.output[0]] = sorted(v.decode() for v in attribute.strings)
    return classes


def read_signature(model: onnx.ModelProto) -> Signature:
    initializers = {init.name for init in model.graph.initializer}
    defaults = input_defaults(model)
    return Signature(
        # Initializers listed as inputs are weights (old exporters), or inputs with a default.
        inputs=[_tensor_spec(v, optional=v.name in defaults) for v in model.graph.input
                if v.name not in initializers or v.name in defaults],
        outputs=[_tensor_spec(v) for v in model.graph.output],
    )


def inspect_model(path: Path) -> ModelInfo:
    """Validate the model file fully and read what mlpack needs to know about it."""
    fix = "pass the path of a valid .onnx model file"
    if not path.exists():
        raise InputError(f"model file {path} does not exist", fix)
    if not path.is_file():
        raise InputError(f"model path {path} is not a file", fix)
    if path.stat().st_size == 0:
        raise InputError(f"model file {path} is empty", fix)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InputError(
            f"{path} is not an ONNX model, or is truncated (protobuf parsing failed)",
            "export the model to ONNX first, e.g. with torch.onnx.export or skl2onnx",
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{path} is not an ONNX model (it holds no graph)", fix)

    external = external_files(model)
    missing = [name for name in external if not (path.parent / name).is_file()]
    if missing:
        raise InputError(
            f"model {path.name} keeps its weights in {', '.join(missing)}, which is missing",
            f"put the external data file next to the model in {path.parent}",
        )
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as exc:
        raise InputError(f"{path} fails the ONNX checker: {_first_line(exc)}", fix) from exc
    locales = locale_nodes(model)
    _check_loads(path, model if any(n.rewritten for n in locales) else None)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    files = [ExternalFile(name=n, size_bytes=(path.parent / n).stat().st_size) for n in external]
    return ModelInfo(
        path=path.resolve(),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size + sum(f.size_bytes for f in files),
        opset=opset,
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        external_data=external,
        external_files=files,
        locale_nodes=locales,
        classes=map_classes(model),
        operators=operator_types(model),
        defaults={name: numpy_helper.to_array(t).ravel().tolist() for name, t in input_defaults(model).items()},
        signature=read_signature(model),
    )


def operator_types(model: onnx.ModelProto) -> list[str]:
    """Every operator type the model's graphs (subgraphs and functions too) use, sorted."""
    found: set[str] = set()

    def walk(nodes) -> None:
        for node in nodes:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}/{node.op_type}")
            for attr in node.attribute:
                for graph in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return sorted(found)


def _check_loads(path: Path, graph: onnx.ModelProto | None = None) -> None:
    """Load the model as it will ship in onnxruntime. `graph` (read without its external
    data) has locale-dependent nodes: those are checked as the build rewrites them."""
    import onnxruntime as ort

    from ..runtime.config import open_session

    source: Path | bytes = path
    if graph is not None:
        portable = onnx.ModelProto()
        portable.CopyFrom(graph)
        make_portable(portable)
        source = portable.SerializeToString()  # small: the weights stay in their files
    try:  # the serving runtime's session, with its defaults, on the CPU every host has
        open_session(source, {}, providers=["CPUExecutionProvider"], external_data_folder=path.parent)
    except Exception as exc:
        raise InputError(
            f"onnxruntime cannot load {path.name}: {_first_line(exc)}",
            "check the model's opset and custom operators against onnxruntime " + ort.__version__,
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
