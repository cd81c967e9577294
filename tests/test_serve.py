"""A built Bento, served by `bentoml serve`, answers like onnxruntime does."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlpack.build import BuildRequest, build
from mlpack.progress import Progress

from .models import linear_model, linear_reference
from .served_apps import BentoServer
from .pyramid import heavy

pytestmark = pytest.mark.slow


MAX_ROWS = 32


@pytest.fixture(scope="module")
@heavy
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("serve")
    model = linear_model(folder / "linear.onnx", features=4, outputs=3)
    request = BuildRequest(model=model, target="x86-cpu", out=folder / "out", max_rows=MAX_ROWS)
    result = build(request, Progress(quiet=True))
    server = BentoServer(result.path / "bento", folder / "bentoml-home")
    yield server.url, model
    server.close()


def assert_answers_like_onnxruntime(reply: httpx.Response, model: Path, x: np.ndarray) -> None:
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(np.array(reply.json()["outputs"]["y"]), linear_reference(model, x), rtol=1e-6)


def test_predictions_match_onnxruntime(served) -> None:
    base, model = served
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    reply = httpx.post(f"{base}/predict", json={"inputs": {"x": x.tolist()}}, timeout=30)
    assert_answers_like_onnxruntime(reply, model, x)


def test_numpy_uploads_are_accepted(served) -> None:
    base, model = served
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x)
    reply = httpx.post(f"{base}/predict_npz", files={"file": ("x.npz", buffer.getvalue())}, timeout=30)
    assert_answers_like_onnxruntime(reply, model, x)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"inputs": {"x": [[1.0, 2.0]]}}, "input 'x' has shape [1, 2]: expected float32 [?, 4]"),
        ({"inputs": {"x": [[1, 2, 3, 4], [1, 2]]}}, "input 'x' is not a rectangular array: expected float32 [?, 4]"),
        ({"inputs": {"x": [["a", "b", "c", "d"]]}}, "input 'x' has values of type string: expected float32 [?, 4]"),
        ({"inputs": {}}, "missing input 'x': expected float32 [?, 4]"),
        ({"inputs": {"x": [[0, 0, 0, 0]], "z": 1}}, "unknown input 'z'; the model's inputs are ['x']"),
        ({"wrong": 1}, 'missing "inputs": expected {"inputs": {"x": float32 [?, 4]}}'),
    ],
)
def test_a_malformed_request_gets_a_400_naming_the_input(served, body, message) -> None:
    base, _ = served
    reply = httpx.post(f"{base}/predict", json=body, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == message


def test_the_server_keeps_serving_after_bad_requests(served) -> None:
    base, model = served
    httpx.post(f"{base}/predict", content=b"{broken", headers={"content-type": "application/json"}, timeout=30)
    x = np.ones((1, 4), dtype=np.float32)
    reply = httpx.post(f"{base}/predict", json={"inputs": {"x": x.tolist()}}, timeout=30)
    assert_answers_like_onnxruntime(reply, model, x)


def test_concurrent_rows_are_batched_and_each_request_gets_its_own_rows(served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    base, model = served
    rows = np.random.default_rng(3).standard_normal((24, 4)).astype(np.float32)
    expected = linear_reference(model, rows)

    def ask(i: int) -> list:
        reply = httpx.post(f"{base}/predict_batch", json={"x": rows[2 * i : 2 * i + 2].tolist()}, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(12)))
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(np.array([row["y"] for row in answer]), expected[2 * i : 2 * i + 2], rtol=1e-6)


@pytest.mark.parametrize("rows", [[[1.0, 2.0, 3.0]], [[1.0] * 8]], ids=["short", "two-rows-long"])
def test_a_batch_request_of_the_wrong_shape_gets_a_400_naming_the_input(served, rows) -> None:
    """As /predict words it; a row of 8 values is not read as two rows of 4 (BentoML's own
    conversion would reshape it)."""
    base, _ = served
    reply = httpx.post(f"{base}/predict_batch", json={"x": rows}, timeout=30)
    assert reply.status_code == 400
    shape = [len(rows), len(rows[0])]
    assert reply.json() == {"error": {"message": f"input 'x' has shape {shape}: expected float32 [?, 4]", "input": "x"}}


def test_a_batch_request_that_is_not_json_gets_the_same_body(served) -> None:
    base, _ = served
    reply = httpx.post(f"{base}/predict_batch", content=b"{broken", headers={"content-type": "application/json"},
                       timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("the request body is not valid JSON: ")


def test_a_batch_request_with_nan_or_too_many_rows_gets_a_400_naming_the_input(served) -> None:
    base, model = served
    reply = httpx.post(f"{base}/predict_batch", content='{"x": [[1.0, 2.0, NaN, 3.0]]}',
                       headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("input 'x' holds nan at [0, 2]")
    reply = httpx.post(f"{base}/predict_batch", json={"x": [[0.0] * 4] * (MAX_ROWS + 1)}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith(
        f"input 'x' has {MAX_ROWS + 1} rows, over this service's limit of {MAX_ROWS} rows")
    x = np.ones((2, 4), dtype=np.float32)  # and the next batch is answered
    reply = httpx.post(f"{base}/predict_batch", json={"x": x.tolist()}, timeout=30)
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(np.array([row["y"] for row in reply.json()]), linear_reference(model, x), rtol=1e-6)


def test_the_built_bento_speaks_the_open_inference_protocol(served) -> None:
    import tritonclient.http as triton

    base, model = served
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    with triton.InferenceServerClient(base.removeprefix("http://")) as client:
        assert client.is_server_ready() and client.is_model_ready("linear")
        assert client.get_model_metadata("linear")["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        given = triton.InferInput("x", [3, 4], "FP32")
        given.set_data_from_numpy(x)
        np.testing.assert_allclose(client.infer("linear", [given]).as_numpy("y"), linear_reference(model, x),
                                   rtol=1e-6)
