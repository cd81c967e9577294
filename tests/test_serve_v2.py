"""A real Open Inference Protocol client, tritonclient[http] as published, against a served
Bento (`bentoml serve`) and against the Lambda handler under awslambdaric behind a
Function URL front: the same answers as onnxruntime, and requests that cannot hurt."""

from __future__ import annotations


import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .models import onnxruntime_reference, text_and_numbers_model
from .served_apps import BentoServer, FunctionURL, build_bento, build_lambda_app
from .pyramid import heavy

pytestmark = pytest.mark.slow

NAME = "words"
MAX_ROWS = 16
LAMBDA_MAX_MB = 1  # a Function URL refuses payloads over 6 MB itself: test the handler's own limit below that


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    return text_and_numbers_model(tmp_path_factory.mktemp("model") / "words.onnx")


@pytest.fixture(scope="module", params=["bento", "lambda"])
@heavy
def server(request: pytest.FixtureRequest, model, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "bento":
        running = BentoServer(build_bento(model, folder / "artifact", NAME, max_rows=MAX_ROWS), folder / "home")
    else:
        app = build_lambda_app(model, folder / "app", NAME, max_rows=MAX_ROWS, max_request_mb=LAMBDA_MAX_MB)
        running = FunctionURL(app, NAME)
    yield request.param, running
    running.close()


@pytest.fixture
def client(server) -> triton.InferenceServerClient:
    with triton.InferenceServerClient(server[1].url.removeprefix("http://"), network_timeout=60) as c:
        yield c


def rows(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
    text = np.array(["cat", "bird", "🐟 fish", "dog", ""] * (n // 5 + 1), dtype=object)[:n]
    return x, text


def inputs(x: np.ndarray, text: np.ndarray, binary: bool = True) -> list[triton.InferInput]:
    first, second = triton.InferInput("x", list(x.shape), "FP32"), triton.InferInput("text", list(text.shape), "BYTES")
    first.set_data_from_numpy(x, binary_data=binary)
    second.set_data_from_numpy(text, binary_data=binary)
    return [first, second]


def test_the_server_is_live_and_ready_and_so_is_the_model(client) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    assert not client.is_model_ready("another-model")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_model_metadata_is_the_served_signature(client, model) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    kinds = {"tensor(float)": "FP32", "tensor(string)": "BYTES", "tensor(int64)": "INT64"}

    def described(tensors) -> list[dict]:
        return [{"name": t.name, "datatype": kinds[t.type], "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
                for t in tensors]

    metadata = client.get_model_metadata(NAME)
    assert metadata["name"] == NAME
    assert metadata["inputs"] == described(session.get_inputs())
    assert metadata["outputs"] == described(session.get_outputs())


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_and_bytes_inputs_answer_as_onnxruntime_does(client, model, binary: bool) -> None:
    x, text = rows()
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("y", "code", "echo")]
    answer = client.infer(NAME, inputs(x, text, binary), outputs=outputs, request_id="q1")
    expected = onnxruntime_reference(model, {"x": x, "text": text})
    assert answer.get_response()["id"] == "q1"
    np.testing.assert_allclose(answer.as_numpy("y"), expected["y"], rtol=1e-6)
    np.testing.assert_array_equal(answer.as_numpy("code"), expected["code"])
    echoed = [e.decode() if isinstance(e, bytes) else e for e in answer.as_numpy("echo")]
    assert echoed == expected["echo"].tolist()


def test_an_unknown_model_is_a_404(client) -> None:
    with pytest.raises(InferenceServerException) as failure:
        client.get_model_metadata("another-model")
    assert failure.value.status() == "404"
    assert failure.value.message() == f"unknown model 'another-model': this server serves '{NAME}'"


def test_nan_gets_a_400_naming_the_input(client) -> None:
    x, text = rows(2)
    x[1, 2] = np.nan
    with pytest.raises(InferenceServerException) as failure:
        client.infer(NAME, inputs(x, text))
    assert failure.value.status() == "400"
    assert failure.value.message().startswith("input 'x' holds nan at [1, 2]: send finite numbers")


def test_too_many_rows_get_a_400_naming_the_limit(client) -> None:
    x, text = rows(MAX_ROWS + 1)
    with pytest.raises(InferenceServerException) as failure:
        client.infer(NAME, inputs(x, text))
    assert failure.value.status() == "400"
    assert failure.value.message().startswith(
        f"input 'x' has {MAX_ROWS + 1} rows, over this service's limit of {MAX_ROWS} rows per request")


def test_a_body_over_the_limit_gets_a_413_unparsed_and_the_server_keeps_serving(server, client, model) -> None:
    kind, running = server
    # Far over the limit; unparsed, or 100,000-deep brackets would be a 400 (128 MiB to
    # urllib: tests/test_hostile_clients.py).
    size = 16 * 2**20 if kind == "bento" else 2 * LAMBDA_MAX_MB * 2**20
    for path in ("/predict", f"/v2/models/{NAME}/infer"):
        reply = httpx.post(f"{running.url}{path}", content=b"[" * size,
                           headers={"content-type": "application/json"}, timeout=60)
        assert reply.status_code == 413
        error = reply.json()["error"]  # the protocol's {"error": "..."} under /v2, mlpack's body elsewhere
        message = error if path.startswith("/v2/") else error["message"]
        assert "is over this service's limit" in message and "mlpack build --max-request-mb" in message
    x, text = rows(3)
    np.testing.assert_allclose(client.infer(NAME, inputs(x, text)).as_numpy("y"),
                               onnxruntime_reference(model, {"x": x, "text": text})["y"], rtol=1e-6)


def test_mlpack_json_shares_the_limits_and_still_answers(server, model) -> None:
    url = server[1].url
    x, text = rows(2)
    reply = httpx.post(f"{url}/predict", json={"inputs": {"x": x.tolist(), "text": text.tolist()}}, timeout=30)
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["outputs"]["y"], onnxruntime_reference(model, {"x": x, "text": text})["y"],
                               rtol=1e-6)
    nan = '{"inputs": {"x": [[1.0, NaN, 0.0, 0.0]], "text": ["cat"]}}'
    reply = httpx.post(f"{url}/predict", content=nan, headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("input 'x' holds nan at [0, 1]")
