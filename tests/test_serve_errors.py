"""One error body for the service: the same bad request gets the same status and the same
`{"error": {"message", "input"?, "hint"?}}` from the Bento's /predict, from the Lambda
handler behind a Function URL and, for a request that is a JSON object, from a direct
invocation of the handler (docs/serving.md, "Errors")."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from mlpack.runtime.config import load_runtime
from mlpack.runtime.errors import first_line

from .models import free_width_model
from .pyramid import heavy
from .served_apps import BentoServer, FunctionURL, build_bento, build_lambda_app

pytestmark = pytest.mark.slow

NAME = "free-width"
NARROW = [[1.0, 2.0]]  # fits x [?, ?]; the model's MatMul takes 4 columns
REFUSED_HINT = ("the inputs fit the served signature, but the model cannot compute on their sizes: "
                "send the sizes it was made for")

# (request body, status, the error body every entry point answers)
BAD_REQUESTS = {
    "invalid-json": (b'{"inputs": {"x": [[1, 2, 3, 4]]}', 400, {"error": {
        "message": "the request body is not valid JSON: Expecting ',' delimiter at line 1 column 33"}}),
    "wrong-shape": ({"inputs": {"x": [1.0, 2.0, 3.0, 4.0]}}, 400, {"error": {
        "message": "input 'x' has shape [4]: expected float32 [?, ?]", "input": "x"}}),
    "refused-by-onnxruntime": ({"inputs": {"x": NARROW}}, 400, {"error": {
        "message": "the model refused these inputs: {onnxruntime}", "hint": REFUSED_HINT}}),
    "unknown-input": ({"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]], "z": [1]}}, 400, {"error": {
        "message": "unknown input 'z'; the model's inputs are ['x']", "input": "z"}}),
    "not-an-object": ([1, 2], 400, {"error": {
        "message": 'the request is not a JSON object: expected {"inputs": {"<input name>": array}}'}}),
}


@pytest.fixture(scope="module")
@heavy
def services(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("errors")
    model = free_width_model(folder / "free_width.onnx")
    app = build_lambda_app(model, folder / "app", NAME)
    with BentoServer(build_bento(model, folder / "bento", NAME), folder / "home") as bento, \
            FunctionURL(app, NAME) as function_url:
        yield bento, function_url, onnxruntime_refusal(app)


def onnxruntime_refusal(app) -> str:
    """The first line of what onnxruntime raises for NARROW in a session made as the served one
    (its graph optimizations rename nodes: the message is onnxruntime's, not one written here)."""
    session = load_runtime(app / "runtime.json").open_session(app)
    with pytest.raises(Exception) as refused:
        session.run(None, {"x": np.array(NARROW, np.float32)})
    return first_line(refused.value)


def post(url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=30)


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_the_bento_and_the_lambda_answer_a_bad_request_alike(services, case: str) -> None:
    body, status, error = BAD_REQUESTS[case]
    bento, function_url, refusal = services
    error = {"error": {k: v.replace("{onnxruntime}", refusal) for k, v in error["error"].items()}}
    for url in (f"{bento.url}/predict", f"{function_url.url}/predict"):
        reply = post(url, body)
        assert (reply.status_code, reply.json()) == (status, error), url
        assert reply.headers["content-type"] == "application/json"
    if not isinstance(body, bytes):  # a direct invocation's event is JSON already
        kind, answer = function_url.runtime.invoke(body)
        assert (kind, answer) == ("response", {"statusCode": status, **error})


def test_a_request_that_fits_is_answered_after_them(services) -> None:
    for served in services[:2]:
        reply = post(f"{served.url}/predict", {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}})
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["outputs"]["y"][0]) == 3


def test_the_open_inference_protocol_keeps_its_own_body(services) -> None:
    """The protocol's {"error": "..."}, the same message, the hint after it."""
    request = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
    *served, refusal = services
    for server in served:
        reply = post(f"{server.url}/v2/models/{NAME}/infer", request)
        message = f"the model refused these inputs: {refusal}; {REFUSED_HINT}"
        assert (reply.status_code, reply.json()) == (400, {"error": message})


@pytest.mark.parametrize("path, method, status, message", [
    ("/nowhere", "POST", 404, "Not Found"),
    ("/predict", "GET", 405, "Method Not Allowed"),
    ("/predict_npz", "POST", 400, 'missing "file": send the file as the multipart/form-data field "file"'),
])
def test_the_bentos_other_answers_have_the_same_body(services, path: str, method: str, status: int,
                                                     message: str) -> None:
    reply = httpx.request(method, f"{services[0].url}{path}", timeout=30)
    assert (reply.status_code, reply.json()) == (status, {"error": {"message": message}})
