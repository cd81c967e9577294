"""The aws-lambda artifact: a zip under 50 MB whose handler answers real predictions
through awslambdaric, without importing BentoML, and a measured cold start."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlpack.build import BuildRequest, build
from mlpack.errors import MlpackError
from mlpack.progress import Progress
from mlpack.awslambda.zip_step import COLD_START_RUNS

from .demo_data import demo_rows
from .served_apps import LambdaRuntime
from .pyramid import local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lambda_artifact(demo_artifact):
    return demo_artifact("aws-lambda")


@pytest.fixture(scope="module")
@local
def runtime(lambda_artifact):
    """awslambdaric running the artifact's handler against the local Runtime API."""
    with LambdaRuntime(lambda_artifact.path / "lambda" / "app") as running:
        yield running


def test_the_zip_is_under_the_direct_upload_limit_and_holds_no_bentoml(lambda_artifact) -> None:
    zip_path = lambda_artifact.path / "lambda" / "function.zip"
    assert zip_path.stat().st_size < 50 * 2**20
    names = zipfile.ZipFile(zip_path).namelist()
    assert "handler.py" in names and "model.onnx" in names and "runtime.json" in names
    assert any(n.startswith("onnxruntime/") for n in names)
    assert not any(n.startswith("bentoml/") for n in names)


def test_awslambdaric_runs_the_handler_and_it_predicts_the_digits(runtime) -> None:
    pixels, labels = demo_rows()
    status, body = runtime.invoke({"inputs": {"pixels": pixels.tolist()}})
    assert status == "response"
    assert body["outputs"]["label"] == labels.tolist()


def test_a_function_url_event_gets_an_http_reply(runtime) -> None:
    pixels, labels = demo_rows(2)
    event = {"body": json.dumps({"inputs": {"pixels": pixels.tolist()}}), "isBase64Encoded": False,
             "requestContext": {"http": {"method": "POST"}}}
    status, reply = runtime.invoke(event)
    assert status == "response" and reply["statusCode"] == 200
    assert json.loads(reply["body"])["outputs"]["label"] == labels.tolist()


def test_a_malformed_request_gets_a_400_naming_the_input(runtime) -> None:
    event = {"body": json.dumps({"inputs": {"pixels": [[1.0, 2.0]]}})}
    status, reply = runtime.invoke(event)
    assert status == "response" and reply["statusCode"] == 400
    assert json.loads(reply["body"]) == {
        "error": {"message": "input 'pixels' has shape [1, 2]: expected float32 [?, 64]", "input": "pixels"}}
    status, reply = runtime.invoke({"body": "{not json"})
    assert reply["statusCode"] == 400 and "not valid JSON" in json.loads(reply["body"])["error"]["message"]


def test_the_handler_imports_neither_bentoml_nor_opentelemetry(lambda_artifact) -> None:
    app = lambda_artifact.path / "lambda" / "app"
    probe = (
        "import sys, handler; "
        "print(sorted(m for m in ('bentoml', 'opentelemetry', 'mlpack_agent.client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=app, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['mlpack_agent.client']"  # events go out through the stdlib client


def test_the_cold_start_is_measured_on_the_zip_with_init_and_first_invoke_apart(lambda_artifact) -> None:
    cold = lambda_artifact.cold_start
    assert cold.runs == COLD_START_RUNS and cold.python and not cold.emulated
    assert 0 < cold.init_seconds <= cold.seconds <= cold.p90_seconds < 10
    assert 0 < cold.invoke_seconds < cold.seconds
    assert "function.zip read-only under awslambdaric" in cold.note
    assert 20 < cold.peak_rss_mb < 1024
    # A measurement: recorded in report.json, never in the manifest (same inputs, same manifest).
    assert json.loads((lambda_artifact.path / "report.json").read_text())["cold_start"] == cold.model_dump(mode="json")
    assert lambda_artifact.manifest.lambda_.cold_start is None


def test_report_md_shows_the_cold_start_and_the_five_most_expensive_imports(lambda_artifact) -> None:
    cold = lambda_artifact.cold_start
    assert len(cold.imports) == 5 and "numpy" in [i.package for i in cold.imports]
    assert [i.seconds for i in cold.imports] == sorted((i.seconds for i in cold.imports), reverse=True)
    report = (lambda_artifact.path / "report.md").read_text()
    section = report[report.index("## Lambda package"):]
    assert "| init + first invoke |" in section and "| first invoke |" in section
    for cost in cold.imports:
        assert f"| `{cost.package}` |" in section
    assert f"the function asks for {lambda_artifact.manifest.memory_mb} MB" in section


def test_a_cold_start_budget_that_is_exceeded_fails_the_build(tmp_path: Path) -> None:
    request = BuildRequest(target="aws-lambda", out=tmp_path, max_cold_start=0.001)
    with pytest.raises(MlpackError, match=r"cold start \d+\.\d+s exceeds --max-cold-start 0.001s"):
        build(request, Progress(quiet=True))
    assert list(tmp_path.iterdir()) == []


def test_function_url_paths_under_v2_speak_the_open_inference_protocol(runtime) -> None:
    import tritonclient.http as triton

    from mlpack.model.demo import DEMO_NAME

    from mlpack.awslambda.function_url import function_url_event

    status, reply = runtime.invoke(function_url_event("GET", "/v2/health/ready", {}, b""))
    assert status == "response" and reply["statusCode"] == 200
    pixels, labels = demo_rows(4)
    given = triton.InferInput("pixels", list(pixels.shape), "FP32")
    given.set_data_from_numpy(pixels.astype(np.float32))  # binary tensor data: a base64 event body
    body, header_length = triton.InferenceServerClient.generate_request_body(
        [given], outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(header_length)}
    status, reply = runtime.invoke(function_url_event("POST", f"/v2/models/{DEMO_NAME}/infer", headers, body))
    assert status == "response" and reply["statusCode"] == 200, reply
    assert json.loads(reply["body"])["outputs"][0]["data"] == labels.tolist()


def test_an_http_body_over_the_limit_gets_a_413_before_it_is_parsed(runtime, lambda_artifact) -> None:
    limit = lambda_artifact.manifest.target.serving.max_request_mb
    status, reply = runtime.invoke({"body": "[" * int(limit * 2**20 + 1), "requestContext": {"http": {"method": "POST"}}})
    assert status == "response" and reply["statusCode"] == 413
    assert json.loads(reply["body"])["error"]["message"].endswith(
        "rebuild the artifact with `mlpack build --max-request-mb N`")


DEEP = "[" * 100_000 + "]" * 100_000
POST = {"requestContext": {"http": {"method": "POST"}}}


@pytest.mark.parametrize("event", [
    {"body": DEEP, **POST},
    {"body": '{"inputs": {"pixels": [[' + "1" * 5001 + "]]}}", **POST},
    {"body": "!not base64!", "isBase64Encoded": True, **POST},
    {"body": '{"inputs": ', **POST},
    {"body": DEEP, "rawPath": "/v2/models/digits-demo/infer", **POST},
    {"body": '{"inputs": [{"name": "pixels", "shape": [1, 1], "datatype": "FP32", "data": [' + "1" * 5001 + "]}]}",
     "rawPath": "/v2/models/digits-demo/infer", **POST},
    {"body": "{}", "rawPath": "/v2/models/digits-demo/infer",
     "headers": {"inference-header-content-length": "nine"}, **POST},
    {"inputs": {"pixels": json.loads("[" * 500 + "]" * 500)}},  # a direct invocation, already parsed
    {"inputs": {"pixels": "x"}},
], ids=["deep", "5001-digits", "bad-base64", "cut-off", "v2-deep", "v2-5001-digits", "v2-bad-header", "direct-deep",
        "direct-string"])
def test_no_request_makes_the_handler_raise(runtime, event) -> None:
    status, reply = runtime.invoke(event)
    assert status == "response", reply  # a raised exception would be a function error: 502 from a Function URL
    assert reply["statusCode"] == 400, reply
    error = json.loads(reply["body"])["error"] if "body" in reply else reply["error"]
    message = error if isinstance(error, str) else error["message"]  # the Open Inference Protocol's, or mlpack's
    assert message and "Traceback" not in message
