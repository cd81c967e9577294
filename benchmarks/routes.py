"""The same requests in the encoding of each route a served model answers, and each route's
answer read back as arrays: what the serving benchmarks time, and check agree first.

A request is a dict of arrays (input name -> batch). A body is (bytes, headers), encoded
once before a run, so that the load generator spends no time encoding while it is timed
(serve_throughput.load also takes a JSON value, which it encodes per request).
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Sequence

import httpx
import numpy as np

PLAIN = "plain BentoML `POST /predict`"
PREDICT = "mlpack JSON `POST /predict`"
PREDICT_NPZ = "mlpack .npz upload `POST /predict_npz`"
V2_JSON = "Open Inference Protocol v2, JSON tensors"
V2_BINARY = "Open Inference Protocol v2, binary tensors (tritonclient's default)"

Request = dict[str, np.ndarray]
Body = tuple[bytes, dict[str, str]]


def json_body(value: Any) -> Body:
    return json.dumps(value).encode(), {"content-type": "application/json"}


def plain_body(request: Request) -> Body:
    """BentoML's own JSON: one field per API argument."""
    return json_body({name: array.tolist() for name, array in request.items()})


def predict_body(request: Request) -> Body:
    return json_body({"inputs": {name: array.tolist() for name, array in request.items()}})


def npz_body(request: Request) -> Body:
    """A multipart upload of an .npz archive, encoded once (as httpx would send it)."""
    archive = io.BytesIO()
    np.savez(archive, **request)
    encoded = httpx.Request("POST", "http://encode.invalid/", files={"file": ("inputs.npz", archive.getvalue())})
    return encoded.read(), {"content-type": encoded.headers["content-type"]}


def v2_json_body(request: Request) -> Body:
    from tritonclient.utils import np_to_triton_dtype

    return json_body({"inputs": [{"name": name, "shape": list(a.shape), "datatype": np_to_triton_dtype(a.dtype),
                                  "data": a.ravel().tolist()} for name, a in request.items()]})


def v2_binary_body(outputs: Sequence[str]) -> Callable[[Request], Body]:
    """Triton's binary tensor data, inputs and `outputs` both binary, as tritonclient sends it."""
    import tritonclient.http as triton
    from tritonclient.utils import np_to_triton_dtype

    def encode(request: Request) -> Body:
        given = []
        for name, array in request.items():
            tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            given.append(tensor)
        wanted = [triton.InferRequestedOutput(o, binary_data=True) for o in outputs]
        body, length = triton.InferenceServerClient.generate_request_body(given, outputs=wanted)
        return body, {"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"}

    return encode


def mlpack_routes(model_name: str, outputs: Sequence[str],
                  routes: Sequence[str] = (PREDICT, PREDICT_NPZ, V2_JSON, V2_BINARY),
                  ) -> dict[str, tuple[str, Callable[[Request], Body]]]:
    """Each of mlpack's `routes` by label: its path and its body encoder."""
    infer = f"/v2/models/{model_name}/infer"
    every = {PREDICT: ("/predict", predict_body), PREDICT_NPZ: ("/predict_npz", npz_body),
             V2_JSON: (infer, v2_json_body), V2_BINARY: (infer, v2_binary_body(outputs))}
    return {label: every[label] for label in routes}


def post(url: str, body: Body, timeout: float = 60) -> httpx.Response:
    reply = httpx.post(url, content=body[0], headers=body[1], timeout=timeout)
    if reply.status_code != 200:
        raise SystemExit(f"{url} answered HTTP {reply.status_code}: {reply.text[:300]}")
    return reply


def answer(reply: httpx.Response, output: str) -> np.ndarray:
    """`output` of any route's answer, as an array: BentoML's bare array, mlpack's
    {"outputs": {name: ...}}, or the Open Inference Protocol's tensors (JSON or binary)."""
    length = reply.headers.get("inference-header-content-length")
    if length is not None:
        import tritonclient.http as triton

        return triton.InferenceServerClient.parse_response_body(reply.content, header_length=int(length)).as_numpy(output)
    value = reply.json()
    if isinstance(value, list):
        return np.asarray(value)
    if isinstance(value["outputs"], dict):
        return np.asarray(value["outputs"][output])
    described = next(o for o in value["outputs"] if o["name"] == output)
    return np.asarray(described["data"]).reshape(described["shape"])
