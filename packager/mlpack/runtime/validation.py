"""Check a request against the model's signature before it reaches onnxruntime.

Shared by the Bento service and the Lambda handler, so both answer a malformed request
with the same 4xx message naming the input and the shape it expects.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# Which numpy kinds a request value may have for each kind the model declares.
_ACCEPTED_KINDS = {
    "f": "fiub",  # floats accept ints and bools too
    "i": "iub",
    "u": "ub",
    "b": "b",
    "U": "U",
    "O": "OU",
}


class RequestError(ValueError):
    """The request does not fit the model's signature (HTTP 400)."""


def _shape_text(shape: list | None) -> str:
    if shape is None:
        return "any shape"
    return "[" + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + "]"


def _expected(spec: Mapping[str, Any]) -> str:
    return f"{spec['dtype']} {_shape_text(spec['shape'])}"


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
        raise RequestError(f"unknown input {unknown[0]!r}; the model's inputs are {names}")
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name = spec["name"]
        if name not in payload:
            raise RequestError(f"missing input {name!r}: expected {_expected(spec)}")
        arrays[name] = _to_array(name, payload[name], spec)
    return arrays


def _to_array(name: str, value: Any, spec: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise RequestError(
            f"input {name!r} is not a rectangular array: expected {_expected(spec)}"
        ) from None
    if array.dtype.kind not in _ACCEPTED_KINDS.get(dtype.kind, dtype.kind):
        raise RequestError(
            f"input {name!r} has values of type {array.dtype.name}: expected {_expected(spec)}"
        )
    shape = spec["shape"]
    if shape is not None:
        if array.ndim != len(shape) or any(
            isinstance(want, int) and got != want for got, want in zip(array.shape, shape)
        ):
            raise RequestError(
                f"input {name!r} has shape {list(array.shape)}: expected {_expected(spec)}"
            )
    return array.astype(dtype, copy=False)


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
