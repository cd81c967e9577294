"""Check a request against the model's signature before it reaches onnxruntime.

Shared by the Bento service and the Lambda handler, so both answer a malformed request
with the same 4xx message naming the input and the shape it expects.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

# Which numpy kinds a request value may have for each kind the model declares.
_ACCEPTED_KINDS = {
    "f": "fiub",  # floats accept ints and bools too
    "i": "iub",
    "u": "iub",  # JSON integers are int64: in range (checked below), they fit
    "b": "b",
    "U": "U",
    "O": "OUS",  # string tensors: JSON strings, or bytes from an .npz (decoded as UTF-8)
}


class RequestError(ValueError):
    """The request does not fit the model's signature (HTTP 400).

    `input` names the input at fault, where one is; `hint` is advice the message does not
    already carry. errors.py answers them as fields of its body; `str()` (what the Open
    Inference Protocol's `{"error": "..."}` says) is the message and the hint together."""

    def __init__(self, message: str, *, input: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.input = input
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}; {self.hint}"


def read_json(body: bytes | str, what: str = "the request body") -> Any:
    """json.loads, with every way it fails on a client's bytes as a RequestError (HTTP 400)
    saying what is wrong in the client's terms."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise RequestError(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise RequestError(f"{what} is nested too deep to read: send arrays nested like the inputs' shapes") from None
    except ValueError:  # the one other failure: an integer past the 4,300 digits Python reads
        raise RequestError(f"{what} holds an integer of more than 4,300 digits, which no tensor can hold") from None


def _shape_text(shape: list | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"


def _type_text(dtype: str) -> str:
    return "string" if dtype == "object" else dtype


def _expected(spec: Mapping[str, Any]) -> str:
    if not _is_tensor(spec):
        return _type_text(spec["dtype"])
    return f"{_type_text(spec['dtype'])} {_shape_text(spec['shape'])}"


def _is_tensor(spec: Mapping[str, Any]) -> bool:
    return not spec["dtype"].startswith(("seq(", "map("))


def parse_inputs(payload: Any, specs: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Turn {"input name": nested lists or arrays} into arrays the model accepts.

    Raises RequestError with a message naming the input at fault and what it expects.
    """
    if not isinstance(payload, Mapping):
        wanted = ", ".join(f'"{s["name"]}": {_expected(s)}' for s in specs)
        problem = 'missing "inputs"' if payload is None else '"inputs" is not an object'
        raise RequestError(f'{problem}: expected {{"inputs": {{{wanted}}}}}')
    names = [s["name"] for s in specs]
    unknown = sorted(set(payload) - set(names))
    if unknown:
        raise RequestError(f"unknown input {unknown[0]!r}; the model's inputs are {names}", input=unknown[0])
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name = spec["name"]
        if payload.get(name) is None:
            if spec.get("optional"):  # left out (or null): the model's default, or no value
                continue
            raise RequestError(f"missing input {name!r}: expected {_expected(spec)}", input=name)
        value = payload[name]
        arrays[name] = _to_array(name, value, spec) if _is_tensor(spec) else _to_value(name, value, spec)
    return arrays


def _to_array(name: str, value: Any, spec: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise RequestError(
            f"input {name!r} is not a rectangular array: expected {_expected(spec)}", input=name
        ) from None
    if array.dtype.kind not in _ACCEPTED_KINDS.get(dtype.kind, dtype.kind):
        raise RequestError(
            f"input {name!r} has values of type {_kind_text(array)}: expected {_expected(spec)}", input=name
        )
    shape = spec["shape"]
    if shape is not None:
        if array.ndim != len(shape) or any(
            isinstance(want, int) and got != want for got, want in zip(array.shape, shape)
        ):
            raise RequestError(
                f"input {name!r} has shape {list(array.shape)}: expected {_expected(spec)}", input=name
            )
    if dtype.kind == "O":
        return _strings(name, array, spec)
    if dtype.kind in "iu" and array.dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)  # astype would wrap (2**63 as int64 is -2**63)
        if array.min() < info.min or array.max() > info.max:
            raise RequestError(f"input {name!r} has values outside the range of {dtype.name}: expected {_expected(spec)}",
                               input=name)
    return array.astype(dtype, copy=False)


def _kind_text(array: np.ndarray) -> str:
    return "string" if array.dtype.kind in "US" else array.dtype.name


def _strings(name: str, array: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """A string tensor as onnxruntime takes it: an object array of str.

    onnxruntime would feed bytes as their repr ("b'...'"), so bytes (an .npz's, the Open
    Inference Protocol's BYTES) are decoded as UTF-8; an input of files (`"content":
    "file"`: encoded images for the artifact's processing) keeps its bytes."""
    values = array.astype(object)
    files = spec.get("content") == "file"
    flat = values.reshape(-1)  # a view: decoded values are written through
    for row, value in enumerate(flat):
        if isinstance(value, bytes) and not files:
            try:
                flat[row] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"input {name!r} row {row} is not UTF-8 text", input=name) from None
        elif not isinstance(value, (str, bytes)):
            raise RequestError(f"input {name!r} mixes strings with other values: expected {_expected(spec)}",
                                   input=name)
    return values


# ONNX map keys and values, as JSON carries them (keys are always strings there).
_SCALARS = {"int64": int, "int32": int, "string": str, "float": float, "double": float}


def _to_value(name: str, value: Any, spec: Mapping[str, Any]) -> Any:
    """A seq(...) or map(...) input from JSON: lists and objects with the declared types."""
    try:
        return _convert(value, spec["dtype"])
    except (TypeError, ValueError, KeyError):
        raise RequestError(f"input {name!r} does not fit {_expected(spec)}", input=name) from None


def _convert(value: Any, type_text: str) -> Any:
    if type_text.startswith("seq("):
        if not isinstance(value, list):
            raise TypeError("not a list")
        inner = type_text[4:-1]
        return [_convert(v, inner) for v in value]
    if type_text.startswith("map("):
        if not isinstance(value, Mapping):
            raise TypeError("not an object")
        key_type, _, value_type = type_text[4:-1].partition(",")
        scalar = _SCALARS[value_type.removeprefix("tensor(").removesuffix(")")]
        return {_SCALARS[key_type](k): scalar(v) for k, v in value.items()}
    if type_text.startswith("tensor("):  # a tensor inside a sequence
        return np.asarray(value, dtype=_TENSOR_DTYPES[type_text[7:-1]])
    raise TypeError(type_text)


_TENSOR_DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "int32": np.int32,
                  "string": object, "bool": np.bool_, "float16": np.float16, "uint8": np.uint8, "int8": np.int8}


def outputs_to_json(values: list, specs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Model outputs as JSON-ready values, keyed by output name."""
    return {spec["name"]: _jsonable(value) for spec, value in zip(specs, values)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
