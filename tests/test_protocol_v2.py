"""The Open Inference Protocol v2 as mlpack_runtime answers it, in-process: every request
and reply shape of the spec, encoded and decoded by tritonclient's own request and
response code (the same bytes its HTTP client sends), against a real ServedModel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from mlpack.runtime import ServedModel, protocol_v2

from .protocol_v2_client import error, infer, result, tensor
from .models import V2_DATATYPES, every_datatype_model, text_and_numbers_model
from .served_apps import build_lambda_app


@pytest.fixture(scope="module")
def every_type(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    folder = tmp_path_factory.mktemp("every-type")
    return ServedModel(build_lambda_app(every_datatype_model(folder / "types.onnx"), folder / "app", name="types"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    folder = tmp_path_factory.mktemp("mixed")
    model = text_and_numbers_model(folder / "mixed.onnx")
    return ServedModel(build_lambda_app(model, folder / "app", name="mixed", max_rows=4, max_request_mb=1))


def sample(datatype: str) -> np.ndarray:
    """Two rows of two values of a datatype, its extremes included."""
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    if datatype == "BYTES":
        return np.array([["héllo", ""], ["wörld", "🐟"]], dtype=object)
    dtype = protocol_v2.NUMPY_TYPES[datatype]
    if dtype.kind == "f":
        return np.array([[1 / 3, -2.5], [1e4, 0.0]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max], [0, 7]], dtype=dtype)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_goes_through_unchanged(every_type: ServedModel, binary: bool) -> None:
    inputs = [tensor(f"in_{d.lower()}", sample(d), d, binary) for d in V2_DATATYPES]
    outputs = [triton.InferRequestedOutput(f"out_{d.lower()}", binary_data=binary) for d in V2_DATATYPES]
    answer = result(infer(every_type, inputs, outputs))
    for datatype in V2_DATATYPES:
        got = answer.get_output(f"out_{datatype.lower()}")
        assert (got["datatype"], got["shape"]) == (datatype, [2, 2])
        value = answer.as_numpy(f"out_{datatype.lower()}")
        expected = sample(datatype)
        if datatype == "BYTES":
            # tritonclient hands BYTES back as bytes from binary data, as str from JSON.
            value = np.vectorize(lambda e: e.decode() if isinstance(e, bytes) else e, otypes=[object])(value)
        np.testing.assert_array_equal(value, expected)
        assert value.dtype == expected.dtype


def test_metadata_lists_the_served_signature_with_minus_one_for_free_axes(mixed: ServedModel) -> None:
    reply = protocol_v2.handle(mixed, "GET", "/v2/models/mixed")
    assert reply.status == 200
    assert json.loads(reply.body) == {
        "name": "mixed",
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                   {"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "code", "datatype": "INT64", "shape": [-1]},
                    {"name": "echo", "datatype": "BYTES", "shape": [-1]}],
    }
    assert [t["name"] for t in json.loads(reply.body)["inputs"]] == [s["name"] for s in mixed.inputs]


def test_server_metadata_and_health(mixed: ServedModel) -> None:
    assert json.loads(protocol_v2.handle(mixed, "GET", "/v2").body) == {
        "name": "mlpack", "version": mixed.config.labels["mlpack_version"], "extensions": ["binary_tensor_data"]}
    assert protocol_v2.handle(mixed, "HEAD", "/v2/health/ready").status == 200
    for path, body in [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True}),
                       ("/v2/models/mixed/ready", {"name": "mixed", "ready": True})]:
        reply = protocol_v2.handle(mixed, "GET", path)
        assert (reply.status, json.loads(reply.body)) == (200, body)


def test_only_the_requested_outputs_come_back_in_the_order_asked_with_the_request_id(mixed: ServedModel) -> None:
    inputs = [tensor("x", np.ones((2, 4), np.float32), "FP32", False),
              tensor("text", np.array(["dog", "cow"], dtype=object), "BYTES", False)]
    outputs = [triton.InferRequestedOutput("echo", binary_data=False),
               triton.InferRequestedOutput("code", binary_data=True)]
    answer = result(infer(mixed, inputs, outputs, request_id="req-7"))
    response = answer.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "mixed"
    assert [o["name"] for o in response["outputs"]] == ["echo", "code"]
    assert answer.as_numpy("code").tolist() == [1, -1]
    assert response["outputs"][0]["data"] == ["dog", "cow"]


def test_nested_json_data_is_accepted_like_flat_data(mixed: ServedModel) -> None:
    x = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    answers = []
    for data in (x, sum(x, [])):
        body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": data},
                           {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["cat", "bird"]}],
                "outputs": [{"name": "y"}]}
        reply = protocol_v2.handle(mixed, "POST", "/v2/models/mixed/infer", {}, json.dumps(body).encode())
        assert reply.status == 200, reply.body
        answers.append(json.loads(reply.body)["outputs"][0]["data"])
    assert answers[0] == answers[1] and len(answers[0]) == 6


def v2_body(x: object, shape: list[int], datatype: str = "FP32", **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": x},
                                  {"name": "text", "shape": [shape[0]], "datatype": "BYTES",
                                   "data": ["cat"] * shape[0]}], **extra}).encode()


@pytest.mark.parametrize("body, message", [
    (b"{not json", "the inference request is not valid JSON"),
    # Parser failures of every kind are the client's: 400, never a 500.
    (b"[" * 100_000 + b"]" * 100_000, "the inference request is nested too deep to read"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [' + b"1" * 5001 + b"]}]}",
     "the inference request holds an integer of more than 4,300 digits"),
    (b"\xff\xfe{", "the inference request is not"),
    (v2_body([10**30, 1, 2, 3], [1, 4]), "input 'x' is FP32 but its data holds values of mixed types"),
    (b'{"inputs": 3}', 'expected an inference request {"inputs"'),
    (v2_body([1, 2, 3], [1, 4]), "input 'x' has 3 values, but its shape [1, 4] holds 4"),
    (v2_body([1, 2, 3, 4], [1, 4], "FP8"), "input 'x' has datatype 'FP8': use one of BOOL"),
    (v2_body(["a", "b", "c", "d"], [1, 4]), "input 'x' is FP32 but its data holds strings"),
    (v2_body([1, 2, 3, 4], [1, 4], "INT8"), "input 'x' has datatype INT8: the model takes FP32 [-1, 4]"),
    (v2_body([1, 2, 3, 4], [1, -4]), 'input \'x\' needs a "shape": a list of non-negative integers'),
    (v2_body([[1, 2], [3]], [1, 4]), "input 'x' has ragged data"),
    (v2_body([1, 2, 3, 4], [1, 4], outputs=[{"name": "z"}]), "unknown output 'z'; the model's outputs are"),
    (v2_body([1, 2, 3, 4], [1, 4], id=5), '"id" must be a string'),
    (json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode(),
     "missing input 'text': expected string [?]"),
    (json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                             "parameters": {"shared_memory_region": "r"}}]}).encode(),
     "input 'x' asks for shared memory (shared_memory_region), which this server does not offer"),
])
def test_a_request_that_does_not_fit_gets_a_400_saying_why(mixed: ServedModel, body: bytes, message: str) -> None:
    assert error(protocol_v2.handle(mixed, "POST", "/v2/models/mixed/infer", {}, body)).startswith(message)


def test_binary_data_must_add_up(mixed: ServedModel) -> None:
    inputs = [tensor("x", np.ones((1, 4), np.float32), "FP32", True),
              tensor("text", np.array(["cat"], dtype=object), "BYTES", True)]
    body, length = triton.InferenceServerClient.generate_request_body(inputs)
    path, headers = "/v2/models/mixed/infer", {"Inference-Header-Content-Length": str(length)}
    assert error(protocol_v2.handle(mixed, "POST", path, headers, body[:-1])).startswith(
        "input 'text' declares 7 bytes of binary data, but the body has 6 left")
    assert error(protocol_v2.handle(mixed, "POST", path, headers, body + b"\0")) == (
        "the body carries 1 bytes of binary data that no input declares")
    assert error(protocol_v2.handle(mixed, "POST", path, {"Inference-Header-Content-Length": "x"}, body)) == (
        "the inference-header-content-length header 'x' is not a number of bytes")


def test_non_finite_numbers_and_too_many_rows_get_a_400_naming_the_input(mixed: ServedModel) -> None:
    path = "/v2/models/mixed/infer"
    nan = v2_body([1.0, float("nan"), 2.0, 3.0], [1, 4])
    assert error(protocol_v2.handle(mixed, "POST", path, {}, nan)).startswith(
        "input 'x' holds nan at [0, 1]: send finite numbers, or rebuild the artifact with "
        "`mlpack build --allow-non-finite`")
    inf = tensor("x", np.array([[1, 2, np.inf, 4]], np.float32), "FP32", True)
    text = tensor("text", np.array(["cat"], dtype=object), "BYTES", True)
    assert error(infer(mixed, [inf, text])).startswith("input 'x' holds inf at [0, 2]")
    assert error(protocol_v2.handle(mixed, "POST", path, {}, v2_body([0.0] * 20, [5, 4]))).startswith(
        "input 'x' has 5 rows, over this service's limit of 4 rows per request: split the request, "
        "or rebuild the artifact with `mlpack build --max-rows N`")


def test_a_body_over_the_limit_gets_a_413_naming_the_limit_and_the_option(mixed: ServedModel) -> None:
    path = "/v2/models/mixed/infer"
    assert error(protocol_v2.handle(mixed, "POST", path, {}, b" " * (5 * 2**19)), 413) == (
        "the request body (2.5 MiB) is over this service's limit of 1 MiB: send fewer rows per request, "
        "or rebuild the artifact with `mlpack build --max-request-mb N`")
    assert error(protocol_v2.handle(mixed, "POST", path, {}, b" " * (2**20 + 1)), 413).startswith(
        "the request body (1,048,577 bytes) is over this service's limit of 1,048,576 bytes")


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/v2/models/other", 404, "unknown model 'other': this server serves 'mixed'"),
    ("POST", "/v2/models/other/infer", 404, "unknown model 'other': this server serves 'mixed'"),
    ("GET", "/v2/models/mixed/versions/1", 404, "model 'mixed' has no versions: drop /versions/..."),
    ("GET", "/v2/repository/index", 404, "no route /v2/repository/index in the Open Inference Protocol v2"),
    ("GET", "/v2/models/mixed/infer", 405, "use POST for this route"),
    ("POST", "/v2/health/live", 405, "use GET for this route"),
])
def test_unknown_models_routes_and_methods(mixed: ServedModel, method: str, path: str, status: int,
                                           message: str) -> None:
    assert error(protocol_v2.handle(mixed, method, path), status).startswith(message)


def test_a_model_failure_is_a_500_that_says_why_and_the_next_request_is_answered(
        mixed: ServedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory\nmore detail")

    monkeypatch.setattr(mixed.session, "run", broken)
    body = v2_body([1.0, 2.0, 3.0, 4.0], [1, 4])
    assert error(protocol_v2.handle(mixed, "POST", "/v2/models/mixed/infer", {}, body), 500) == (
        "the model failed on this request: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory")
    monkeypatch.undo()
    assert protocol_v2.handle(mixed, "POST", "/v2/models/mixed/infer", {}, body).status == 200


def test_a_sequence_of_maps_is_served_as_bytes_holding_json() -> None:
    spec = {"name": "output_probability", "dtype": "seq(map(int64,tensor(float)))", "shape": None}
    assert protocol_v2.tensor_metadata(spec) == {"name": "output_probability", "datatype": "BYTES", "shape": [-1]}
    described, blob = protocol_v2.encode_output(spec, [{0: 0.25, 1: 0.75}, {0: 1.0, 1: 0.0}], binary=False)
    assert blob is None
    assert described == {"name": "output_probability", "datatype": "BYTES", "shape": [2],
                         "data": ['{"0": 0.25, "1": 0.75}', '{"0": 1.0, "1": 0.0}']}


def test_the_runtime_needs_nothing_but_the_standard_library_and_numpy() -> None:
    import ast

    for module in ("protocol_v2.py", "limits.py"):
        tree = ast.parse((Path(protocol_v2.__file__).parent / module).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert imported <= {"__future__", "json", "struct", "time", "dataclasses", "typing", "urllib", "numpy"}
