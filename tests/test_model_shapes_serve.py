"""A scikit-learn classifier with skl2onnx's default ZipMap output and a text pipeline on raw
strings each build for every target and answer through /predict as scikit-learn does: the
Bento targets under `bentoml serve`, aws-lambda through its handler under awslambdaric
and the local Runtime API. onnxruntime's native log never shows on the server's stderr."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import numpy as np
import pytest

from mlpack.artifact import Artifact
from mlpack.serve import ServeOptions, runtime_env_vars
from mlpack.build import BuildRequest, BuildResult, build
from mlpack.progress import Progress

from . import shape_models as shapes
from .served_apps import BentoServer, LambdaRuntime

pytestmark = pytest.mark.slow

TARGETS = ["x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda"]
NATIVE_LOG = ("[E:onnxruntime", "[W:onnxruntime", "[I:onnxruntime")
Predict = Callable[[dict], tuple[int, Any]]


@pytest.fixture(scope="module")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any, Path, dict]]:
    """name -> (model.onnx, fitted estimator, calibration .npz, probe inputs for /predict)."""
    folder = tmp_path_factory.mktemp("sklearn-models")
    x, y = shapes.iris()
    zipmap, clf = shapes.zipmap_classifier(folder / "iris.onnx")
    np.savez(folder / "iris.npz", X=x, labels=y)
    text, pipe = shapes.text_classifier(folder / "text.onnx")
    sentences = [s for s, _ in shapes.SENTENCES]
    np.savez(folder / "text.npz", text=np.array(sentences)[:, None], labels=np.array(pipe.predict(sentences)))
    probe_rows = x[[0, 25, 50, 75, 100, 125, 149]]
    return {
        "zipmap": (zipmap, clf, folder / "iris.npz", {"X": probe_rows}),
        "text": (text, pipe, folder / "text.npz", {"text": np.array(shapes.PROBE_SENTENCES)[:, None]}),
    }


@contextlib.contextmanager
def bento_server(result: BuildResult, home: Path) -> Iterator[tuple[Predict, list[str]]]:
    """`bentoml serve` on the artifact's Bento; yields predict and, after exit, its stderr lines."""
    env = {}
    if result.manifest.target.cuda is not None:  # no GPU here: the pinned onnxruntime-gpu on the CPU, on purpose
        env = runtime_env_vars(Artifact.open(result.path), ServeOptions(allow_cpu=True))
    stderr: list[str] = []
    server = BentoServer(result.path / "bento", home, env=env, timeout_s=90)
    try:
        def predict(body: dict) -> tuple[int, Any]:
            reply = httpx.post(f"{server.url}/predict", json=body, timeout=30)
            return reply.status_code, reply.json()

        yield predict, stderr
    finally:
        server.close()
        stderr.extend(server.output().splitlines())


@contextlib.contextmanager
def lambda_function(result: BuildResult) -> Iterator[tuple[Predict, list[str]]]:
    """The artifact's handler under awslambdaric, as Lambda runs it, invoked through a
    Function URL event."""
    stderr: list[str] = []
    runtime = LambdaRuntime(result.path / "lambda" / "app", env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})

    def predict(body: dict) -> tuple[int, Any]:
        status, reply = runtime.invoke({"body": json.dumps(body), "isBase64Encoded": False,
                                        "requestContext": {"http": {"method": "POST"}}})
        assert status == "response", reply
        return reply["statusCode"], json.loads(reply["body"])

    try:
        yield predict, stderr
    finally:
        runtime.close()
        stderr.extend(runtime.output().splitlines())


def served(result: BuildResult, home: Path):
    return lambda_function(result) if result.manifest.lambda_ is not None else bento_server(result, home)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["zipmap", "text"])
def test_a_scikit_learn_model_answers_as_scikit_learn_on_every_target(
    kind: str, target: str, sklearn_models, short_timing, tmp_path: Path
) -> None:
    model, estimator, calibration, probe = sklearn_models[kind]
    result = build(BuildRequest(model=model, target=target, out=tmp_path / "out", calibration=calibration),
                   Progress(quiet=True))
    inputs = {name: value.tolist() for name, value in probe.items()}
    with served(result, tmp_path / "bentoml-home") as (predict, stderr):
        status, body = predict({"inputs": inputs})
        assert status == 200, body
        missing_status, missing = predict({"inputs": {}})
    rows = next(iter(probe.values()))
    sklearn_rows = rows[:, 0].tolist() if kind == "text" else rows
    outputs = body["outputs"]
    assert outputs["output_label"] == estimator.predict(sklearn_rows).tolist()
    # One {class: probability} map per row, the classes as JSON keys, in class order.
    expected = estimator.predict_proba(sklearn_rows)
    classes = [str(c) for c in estimator.classes_]
    assert [list(row) for row in outputs["output_probability"]] == [classes] * len(rows)
    got = np.array([[row[c] for c in classes] for row in outputs["output_probability"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert missing_status == 400 and f"missing input {next(iter(probe))!r}" in json.dumps(missing)
    assert not [line for line in stderr if line.startswith(NATIVE_LOG)], stderr


@pytest.mark.parametrize("target", ["x86-cpu", "aws-lambda"])
def test_external_weights_ship_beside_the_model_and_serve(target: str, short_timing, tmp_path: Path) -> None:
    import zipfile

    model = shapes.external_model(tmp_path / "source")
    result = build(BuildRequest(model=model, target=target, out=tmp_path / "out"), Progress(quiet=True))
    shipped = result.path / "model" / "model.onnx"
    assert shipped.stat().st_size < 4096  # the graph only: the weights stayed external
    assert "model/model.onnx.data" in result.manifest.files
    assert result.manifest.model.size_bytes == shipped.stat().st_size + (shipped.parent / "model.onnx.data").stat().st_size
    if result.manifest.lambda_ is not None:
        names = zipfile.ZipFile(result.path / "lambda" / "function.zip").namelist()
        assert {"model.onnx", "model.onnx.data"} <= set(names)
    else:
        assert (result.path / "bento" / "src" / "model.onnx.data").is_file()
    x = np.random.default_rng(3).standard_normal((3, 64)).astype(np.float32)
    with served(result, tmp_path / "bentoml-home") as (predict, _):
        status, body = predict({"inputs": {"x": x.tolist()}})
    assert status == 200, body
    expected = shapes.run_onnx(shipped, {"x": x})[0]
    np.testing.assert_allclose(np.array(body["outputs"]["logits"]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ["x86-cpu", "aws-lambda"])
def test_several_inputs_one_optional_are_served_with_and_without_it(target: str, short_timing, tmp_path: Path) -> None:
    model = shapes.optional_model(tmp_path / "optional.onnx")
    result = build(BuildRequest(model=model, target=target, out=tmp_path / "out"), Progress(quiet=True))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    bias = np.full((2, 3), 0.5, np.float32)
    with served(result, tmp_path / "bentoml-home") as (predict, _):
        without = predict({"inputs": {"x": x.tolist()}})
        with_bias = predict({"inputs": {"x": x.tolist(), "bias": bias.tolist()}})
        wrong = predict({"inputs": {"x": x.tolist(), "bias": [[1.0]]}})
    assert without == (200, {"outputs": {"y": x.tolist()}})
    assert with_bias == (200, {"outputs": {"y": (x + bias).tolist()}})
    assert wrong[0] == 400 and "input 'bias' has shape [1, 1]: expected float32 [?, 3]" in json.dumps(wrong[1])
