"""The Open Inference Protocol v2 (KServe v2, Triton's HTTP/REST protocol) over `ServedModel`.

    GET  /v2                             server metadata
    GET  /v2/health/live                 200 once the process answers
    GET  /v2/health/ready                200 once the model is loaded
    GET  /v2/models/{name}               model metadata: the served signature
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}/infer         JSON tensors in and out

`handle` is a pure function of the request (method, path, headers, body) and returns a
`Reply`: the Bento service and the Lambda handler only carry bytes to and from it, so
both speak the protocol identically. Errors are {"error": "..."}: 400 for a request that
does not fit, 404 for an unknown model or route, 413 for a body over the artifact's
limit (which the transports check before the body is read), 500 when the model fails.

Besides JSON tensor data, Triton's binary tensor data extension is supported (what
`tritonclient` sends by default): the JSON header is followed by the raw tensors, its
length in the `Inference-Header-Content-Length` header; outputs come back binary when the
request asks (`binary_data_output`, or an output's `binary_data`). Model versions, shared
memory and the classification extension are not.

Standard library and numpy only: this module ships in every artifact.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import unquote

import numpy as np

from .errors import FAILED, first_line
from .limits import BodyTooLarge
from .validation import RequestError, outputs_to_json, read_json

if TYPE_CHECKING:
    from .served import ServedModel

SERVER_NAME = "mlpack"
PLATFORM = "onnxruntime_onnx"  # Triton's name for an ONNX model run by onnxruntime
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "inference-header-content-length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"

# A served input spec with "content": "file" takes files (encoded images) as BYTES: kept as bytes.
FILE_CONTENT = "file"
# numpy dtype names -> the protocol's tensor data types. Strings (numpy object or str) are BYTES.
DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
    "object": "BYTES",
}
NUMPY_TYPES = {v2: np.dtype(name) for name, v2 in DATATYPES.items()}
# Which numpy kinds JSON data may decode to for each kind of datatype.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf", "O": "U"}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(value).encode(), {"content-type": JSON_TYPE, **(headers or {})})

    @classmethod
    def error(cls, status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        return cls.json(status, {"error": message}, headers)


class _Refusal(Exception):
    """A request answered with an error status other than 400."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def handle(model: ServedModel, method: str, path: str, headers: Mapping[str, str] | None = None,
           body: bytes = b"") -> Reply:
    """Answer one protocol request. `headers` may have any case; `body` is the raw body."""
    started = time.perf_counter()
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        method = method.upper()
        # HEAD is GET without the body (the server drops it): health checks use either.
        return _route(model, "GET" if method == "HEAD" else method, path, headers, body, started)
    except _Refusal as refusal:
        return refusal.reply
    except BodyTooLarge as exc:
        model.rejected(started)
        return Reply.error(413, str(exc))
    except RequestError as exc:
        return Reply.error(400, str(exc))


def _route(model: ServedModel, method: str, path: str, headers: dict[str, str], body: bytes,
           started: float) -> Reply:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:1] != ["v2"]:
        raise _Refusal(Reply.error(404, f"no route {path}: the protocol's routes start with /v2"))
    parts = parts[1:]
    if parts == []:
        _allow(method, "GET")
        return Reply.json(200, server_metadata(model))
    if parts == ["health", "live"]:
        _allow(method, "GET")
        return Reply.json(200, {"live": True})
    if parts == ["health", "ready"]:
        _allow(method, "GET")
        return Reply.json(200, {"ready": True})
    if len(parts) >= 2 and parts[0] == "models":
        name, rest = parts[1], parts[2:]
        _known_model(model, name, rest)
        if rest == []:
            _allow(method, "GET")
            return Reply.json(200, model_metadata(model))
        if rest == ["ready"]:
            _allow(method, "GET")
            return Reply.json(200, {"name": model.name, "ready": True})
        if rest == ["infer"]:
            _allow(method, "POST")
            return infer(model, body, headers, started)
    raise _Refusal(Reply.error(404, f"no route {path} in the Open Inference Protocol v2"))


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise _Refusal(Reply.error(405, f"use {allowed} for this route", {"allow": allowed}))


def _known_model(model: ServedModel, name: str, rest: list[str]) -> None:
    if name != model.name:
        raise _Refusal(Reply.error(404, f"unknown model {name!r}: this server serves {model.name!r}"))
    if rest[:1] == ["versions"]:
        raise _Refusal(Reply.error(
            404, f"model {name!r} has no versions: drop /versions/... from the path (one version is served)"))


def server_metadata(model: ServedModel) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": model.config.labels.get("mlpack_version", ""),
            "extensions": EXTENSIONS}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """The served signature as the protocol's tensor metadata (-1 for a free dimension)."""
    return {
        "name": model.name,
        "platform": PLATFORM,
        "inputs": [tensor_metadata(spec) for spec in model.inputs],
        "outputs": [tensor_metadata(spec) for spec in model.outputs],
    }


def tensor_metadata(spec: Mapping[str, Any]) -> dict[str, Any]:
    shape = spec["shape"]
    # Not a tensor (a sequence of maps, e.g. ZipMap) or an unknown rank: a list of elements.
    dims = [-1] if shape is None or spec["dtype"] not in DATATYPES else [d if isinstance(d, int) else -1 for d in shape]
    return {"name": spec["name"], "datatype": DATATYPES.get(spec["dtype"], "BYTES"), "shape": dims}


# --- inference -------------------------------------------------------------------------

def infer(model: ServedModel, body: bytes, headers: Mapping[str, str], started: float | None = None) -> Reply:
    """POST /v2/models/{name}/infer: decode the tensors, run the model, encode the outputs."""
    started = time.perf_counter() if started is None else started
    model.limits.check_body(len(body))
    try:
        request, binary = _split_body(body, headers)
        arrays = _decode_inputs(request, binary, model.inputs)
        wanted = _requested_outputs(request, model.outputs)
    except RequestError:
        model.rejected(started)
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # data numpy cannot take as given
        model.rejected(started)
        raise RequestError(f"the inference request's data cannot be read: {first_line(exc)}") from None
    try:
        values = model.infer(arrays, started)
    except RequestError:
        raise
    except Exception as exc:  # the model itself failed: a 500 that says why, the server goes on
        return Reply.error(500, f"{FAILED}: {first_line(exc)}")
    by_name = {spec["name"]: (spec, value) for spec, value in zip(model.outputs, values)}
    outputs, blobs = [], []
    for name, binary_out in wanted:
        spec, value = by_name[name]
        described, blob = encode_output(spec, value, binary_out)
        outputs.append(described)
        if blob is not None:
            blobs.append(blob)
    response: dict[str, Any] = {"model_name": model.name}
    if "id" in request:
        response["id"] = request["id"]
    response["outputs"] = outputs
    header = json.dumps(response).encode()
    if not blobs:
        return Reply(200, header, {"content-type": JSON_TYPE})
    return Reply(200, header + b"".join(blobs),
                 {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(header))})


def _split_body(body: bytes, headers: Mapping[str, str]) -> tuple[dict[str, Any], bytes]:
    """(the JSON inference request, the binary tensor data after it)."""
    length = headers.get(HEADER_LENGTH)
    if length is None:
        header, binary = body, b""
    else:
        try:
            size = int(length)
        except ValueError:
            raise RequestError(f"the {HEADER_LENGTH} header {length!r} is not a number of bytes") from None
        if not 0 <= size <= len(body):
            raise RequestError(f"the {HEADER_LENGTH} header says {size} bytes, but the body has {len(body)}")
        header, binary = body[:size], body[size:]
    request = read_json(header, "the inference request")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError('expected an inference request {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    if "id" in request and not isinstance(request["id"], str):
        raise RequestError('"id" must be a string')
    _parameters(request, "the request")
    return request, binary


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = obj.get("parameters", {})
    if not isinstance(parameters, dict):
        raise RequestError(f'"parameters" of {where} must be an object')
    for key in ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"):
        if key in parameters:
            raise RequestError(f"{where} asks for shared memory ({key}), which this server does not offer: "
                               "send the tensor in the request")
    return parameters


def _decode_inputs(request: Mapping[str, Any], binary: bytes,
                   specs: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    served = {spec["name"]: tensor_metadata(spec) for spec in specs}
    # Inputs whose BYTES are files (an encoded image the artifact's processing decodes), not text.
    files = {spec["name"] for spec in specs if spec.get("content") == FILE_CONTENT}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in request["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError('each input must be an object with a "name"')
        name = item["name"]
        if name in arrays:
            raise RequestError(f"input {name!r} is given twice")
        datatype, shape = _datatype(item), _shape(item)
        wanted = served.get(name)  # an unknown name is refused with the model's inputs listed
        if wanted is not None and datatype != wanted["datatype"]:
            raise RequestError(f"input {name!r} has datatype {datatype}: the model takes {wanted['datatype']} "
                               f"{wanted['shape']}")
        size = _parameters(item, f"input {name!r}").get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise RequestError(f'input {name!r} has no "data" (nor binary data)')
            arrays[name] = _from_json(name, datatype, shape, item["data"])
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError(f"input {name!r} declares {size!r} bytes of binary data, but the body has "
                                   f"{len(binary) - offset} left")
            arrays[name] = _from_binary(name, datatype, shape, binary[offset:offset + size], text=name not in files)
            offset += size
    if offset != len(binary):
        raise RequestError(f"the body carries {len(binary) - offset} bytes of binary data that no input declares")
    return arrays


def _datatype(item: Mapping[str, Any]) -> str:
    datatype = item.get("datatype")
    if datatype not in NUMPY_TYPES:
        raise RequestError(f"input {item['name']!r} has datatype {datatype!r}: use one of {', '.join(NUMPY_TYPES)}")
    return datatype


def _shape(item: Mapping[str, Any]) -> list[int]:
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise RequestError(f'input {item["name"]!r} needs a "shape": a list of non-negative integers')
    return shape


def _count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _fit_shape(name: str, flat: np.ndarray, shape: list[int]) -> np.ndarray:
    if flat.size != _count(shape):
        raise RequestError(f"input {name!r} has {flat.size} values, but its shape {shape} holds {_count(shape)}")
    return flat.reshape(shape)


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    dtype = NUMPY_TYPES[datatype]
    try:
        values = np.asarray(data)
        if dtype.kind in "iu" and values.dtype.kind in "fO":
            values = _python_ints(name, datatype, data)
    except ValueError:  # ragged nesting
        raise RequestError(f"input {name!r} has ragged data: give it flat, or nested like its shape") from None
    if values.size and values.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise RequestError(f"input {name!r} is {datatype} but its data holds {_json_kind(values)}")
    if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise RequestError(f"input {name!r} has values outside the range of {datatype}")
    flat = values.ravel().astype(dtype)
    return _fit_shape(name, flat, shape)


def _python_ints(name: str, datatype: str, data: Any) -> np.ndarray:
    """JSON integers numpy reads as floats (those past int64, for UINT64) as exact integers;
    data with any element that is not an integer as numpy reads it."""
    values = np.asarray(data, dtype=object)
    flat = values.ravel()
    if not flat.size or not all(type(e) is int for e in flat):
        return np.asarray(data)
    low, high = min(flat), max(flat)
    for exact in (np.int64, np.uint64):
        if np.iinfo(exact).min <= low and high <= np.iinfo(exact).max:
            return values.astype(exact)
    raise RequestError(f"input {name!r} has values outside the range of {datatype}")


def _json_kind(values: np.ndarray) -> str:
    kinds = {"U": "strings", "b": "booleans", "f": "floating-point numbers", "i": "integers", "u": "integers"}
    return kinds.get(values.dtype.kind, "values of mixed types (or null)")


def _from_binary(name: str, datatype: str, shape: list[int], blob: bytes, text: bool = True) -> np.ndarray:
    if datatype == "BYTES":
        return _fit_shape(name, _unpack_bytes(name, blob, text), shape)
    dtype = NUMPY_TYPES[datatype].newbyteorder("<")
    if len(blob) != _count(shape) * dtype.itemsize:
        raise RequestError(f"input {name!r} has {len(blob)} bytes of binary data, but {shape} {datatype} "
                           f"takes {_count(shape) * dtype.itemsize}")
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _unpack_bytes(name: str, blob: bytes, text: bool = True) -> np.ndarray:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes (UTF-8 text,
    or kept as bytes when not `text`)."""
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise RequestError(f"input {name!r} has truncated BYTES data")
        (length,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + length > len(blob):
            raise RequestError(f"input {name!r} has truncated BYTES data")
        try:
            item = blob[offset:offset + length]
            items.append(item.decode("utf-8") if text else item)
        except UnicodeDecodeError:
            raise RequestError(f"input {name!r} holds bytes that are not UTF-8 text") from None
        offset += length
    return np.array(items, dtype=object)


def _requested_outputs(request: Mapping[str, Any], specs: list[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """(output name, binary?) for each output to return, in the order asked."""
    names = [spec["name"] for spec in specs]
    all_binary = bool(request.get("parameters", {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return [(name, all_binary) for name in names]
    if not isinstance(asked, list):
        raise RequestError('"outputs" must be a list of {"name": ...}')
    wanted = []
    for item in asked:
        if not isinstance(item, dict) or item.get("name") not in names:
            shown = item.get("name") if isinstance(item, dict) else item
            raise RequestError(f"unknown output {shown!r}; the model's outputs are {names}")
        parameters = _parameters(item, f"output {item['name']!r}")
        if "classification" in parameters:
            raise RequestError("the classification extension is not supported: ask for the output itself")
        wanted.append((item["name"], bool(parameters.get("binary_data", all_binary))))
    return wanted


def encode_output(spec: Mapping[str, Any], value: Any, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    """One $response_output, and its binary data when asked for."""
    array = _as_tensor(spec, value)
    datatype = DATATYPES.get(array.dtype.name, "BYTES") if array.dtype.kind not in "OUS" else "BYTES"
    described: dict[str, Any] = {"name": spec["name"], "datatype": datatype, "shape": list(array.shape)}
    if datatype == "BYTES":
        elements = [_text(e) for e in array.ravel()]
        if not binary:
            described["data"] = elements
            return described, None
        blob = b"".join(struct.pack("<I", len(e)) + e for e in (t.encode("utf-8") for t in elements))
    else:
        if not binary:
            described["data"] = array.ravel().tolist()
            return described, None
        blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    described["parameters"] = {"binary_data_size": len(blob)}
    return described, blob


def _as_tensor(spec: Mapping[str, Any], value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    # A sequence of maps (ZipMap) or another non-tensor: one BYTES element per item, as JSON.
    plain = outputs_to_json([value], [spec])[spec["name"]]
    items = plain if isinstance(plain, list) else [plain]
    return np.array([json.dumps(item) for item in items], dtype=object)


def _text(element: Any) -> str:
    if isinstance(element, bytes):
        return element.decode("utf-8", "replace")
    return str(element)
