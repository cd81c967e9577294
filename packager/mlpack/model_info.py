"""Inspect an ONNX model: is it valid, does onnxruntime load it, what is its signature."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper
from pydantic import BaseModel

from .errors import InputError

Dim = int | str | None  # a fixed size, a symbolic name, or unknown


class TensorSpec(BaseModel):
    name: str
    dtype: str  # numpy dtype name ("float32"), or the ONNX type for non-tensors ("seq(map(int64,tensor(float)))")
    shape: list[Dim] | None  # None when the rank itself is unknown

    @property
    def is_tensor(self) -> bool:
        return not self.dtype.startswith(("seq", "map", "optional"))

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
        """True when every input's first axis is free: requests can be batched together."""
        return bool(self.inputs) and all(
            t.shape and not isinstance(t.shape[0], int) for t in self.inputs
        )


class ModelInfo(BaseModel):
    path: Path
    sha256: str
    size_bytes: int
    opset: int
    ir_version: int
    producer: str
    external_data: list[str]
    signature: Signature


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


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    type_proto = value.type
    if type_proto.WhichOneof("value") != "tensor_type":
        return TensorSpec(name=value.name, dtype=_type_text(type_proto), shape=None)
    tensor = type_proto.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    if not tensor.HasField("shape"):
        return TensorSpec(name=value.name, dtype=dtype, shape=None)
    dims: list[Dim] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorSpec(name=value.name, dtype=dtype, shape=dims)


def read_signature(model: onnx.ModelProto) -> Signature:
    initializers = {init.name for init in model.graph.initializer}
    return Signature(
        # Old exporters list initializers as graph inputs too; they are not request inputs.
        inputs=[_tensor_spec(v) for v in model.graph.input if v.name not in initializers],
        outputs=[_tensor_spec(v) for v in model.graph.output],
    )


def _external_files(model: onnx.ModelProto) -> list[str]:
    files = set()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return sorted(files)


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

    external = _external_files(model)
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
    _check_loads(path)

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(
        path=path.resolve(),
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size + sum((path.parent / n).stat().st_size for n in external),
        opset=opset,
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        external_data=external,
        signature=read_signature(model),
    )


def _check_loads(path: Path) -> None:
    import onnxruntime as ort

    from .runtime.config import open_session

    try:  # the serving runtime's session, with its defaults, on the CPU every host has
        open_session(path, {}, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(
            f"onnxruntime cannot load {path.name}: {_first_line(exc)}",
            "check the model's opset and custom operators against onnxruntime " + ort.__version__,
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
