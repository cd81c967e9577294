"""Open Inference Protocol v2 requests made and read by tritonclient's own encoders, handled
in this process by mlpack_runtime's protocol_v2 (no server): shared by the protocol and
processing tests."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.http as triton

from mlpack.runtime import ServedModel, protocol_v2


def infer(model: ServedModel, inputs: list, outputs: list | None = None, **kwargs) -> protocol_v2.Reply:
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    return protocol_v2.handle(model, "POST", f"/v2/models/{model.name}/infer", headers, body)


def result(reply: protocol_v2.Reply) -> triton.InferResult:
    assert reply.status == 200, reply.body[:500]
    length = reply.headers.get(protocol_v2.HEADER_LENGTH)
    return triton.InferenceServerClient.parse_response_body(reply.body, header_length=length and int(length))


def tensor(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    return item


def error(reply: protocol_v2.Reply, status: int = 400) -> str:
    assert reply.status == status, reply.body[:500]
    return json.loads(reply.body)["error"]
