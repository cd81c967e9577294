"""Bundled processing served for real: the Bento under `bentoml serve` and the Lambda zip's
handler under awslambdaric answer raw text and uploaded images as the model answers the
processed inputs, with class names."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import zipfile
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from mlpack.build import BuildRequest, build
from mlpack.processing import ProcessingRequest
from mlpack.progress import Progress
from mlpack.awslambda.zip_step import COLD_START_RUNS

from .served_apps import BentoServer, LambdaRuntime
from .serving_docs import documented_lines, expect, outputs, requires_curl, run_documented
from .processing_models import (
    IMAGE_CLASSES, IMAGE_SPEC, SENTENCES, image_classifier, photo_png, reference_pixels, text_encoder,
    text_reference, train_tokenizer, vocab_size, write_labels,
)
from .pyramid import heavy

pytestmark = pytest.mark.slow


def image_build(folder: Path, target: str):
    """The image classifier with its preprocessing spec and class names."""
    folder.mkdir(parents=True, exist_ok=True)
    model = image_classifier(folder / "classifier.onnx")
    (folder / "spec.toml").write_text(IMAGE_SPEC)
    request = BuildRequest(model=model, target=target, out=folder / "out", processing=ProcessingRequest(
        image_preprocess=folder / "spec.toml", labels=str(write_labels(folder / "labels.txt", IMAGE_CLASSES)),
        top_k=2))
    return build(request, Progress(quiet=True)), model


def text_build(folder: Path, target: str):
    """The sentence encoder with tokenizer.json beside it, calibrated on sentences."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(folder / "tokenizer.json")
    model = text_encoder(folder / "encoder.onnx", vocab_size(tokenizer))
    (folder / "sentences.txt").write_text("\n".join(SENTENCES * 4))
    request = BuildRequest(model=model, target=target, out=folder / "out", calibration=folder / "sentences.txt")
    return build(request, Progress(quiet=True)), model, tokenizer


def expected_classes(model: Path, png: bytes) -> tuple[list[str], np.ndarray]:
    probabilities = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"pixels": reference_pixels(png)})[0][0]
    order = np.argsort(-probabilities)[:2]
    return [IMAGE_CLASSES[i] for i in order], probabilities[order]


# ---- the Bento ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
@heavy
def image_bento(tmp_path_factory: pytest.TempPathFactory, short_timing):
    folder = tmp_path_factory.mktemp("image-bento")
    result, model = image_build(folder, "x86-cpu")
    with BentoServer(result.path / "bento", folder / "home") as server:
        yield server.url, model, folder


@pytest.fixture(scope="module")
@heavy
def text_bento(tmp_path_factory: pytest.TempPathFactory, short_timing):
    folder = tmp_path_factory.mktemp("text-bento")
    result, model, tokenizer = text_build(folder, "x86-cpu")
    with BentoServer(result.path / "bento", folder / "home") as server:
        yield server.url, result, tokenizer


def test_the_bento_answers_an_uploaded_png_with_class_names(image_bento) -> None:
    base, model, folder = image_bento
    png = photo_png(folder / "photo.png")
    labels, probabilities = expected_classes(model, png)
    reply = httpx.post(f"{base}/predict_image", files={"file": ("photo.png", png, "image/png")}, timeout=30)
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert outputs["label"] == [labels[0]] and outputs["top_labels"] == [labels]
    np.testing.assert_allclose(outputs["top_probabilities"][0], probabilities, rtol=1e-4)
    as_json = httpx.post(f"{base}/predict", json={"inputs": {"image": [base64.b64encode(png).decode()]}}, timeout=30)
    assert as_json.status_code == 200 and as_json.json()["outputs"]["top_labels"] == [labels]


@requires_curl
def test_serving_md_image_requests_work_as_typed(image_bento, tmp_path: Path) -> None:
    base, model, folder = image_bento
    png = photo_png(tmp_path / "photo.png")  # the file docs/serving.md's lines send
    labels, _ = expected_classes(model, png)
    lines = [(route, line) for route, line in documented_lines() if "photo.png" in line]
    sent = run_documented(lines, base, tmp_path, {
        "/predict_image": lambda text: expect(outputs(text)["label"] == [labels[0]]),
        "/predict": lambda text: expect(outputs(text)["top_labels"] == [labels]),
    })
    assert sent == ["/predict_image", "/predict"]


def test_the_bento_refuses_an_upload_that_is_not_an_image_with_a_400(image_bento) -> None:
    base, _, _ = image_bento
    reply = httpx.post(f"{base}/predict_image", files={"file": ("notes.txt", b"hello", "text/plain")}, timeout=30)
    assert reply.status_code == 400
    assert reply.json() == {"error": {"message": "input 'image' row 0 is not a PNG or JPEG image"}}


def test_the_bento_answers_raw_sentences_as_tokenizer_plus_onnxruntime(text_bento) -> None:
    base, result, tokenizer = text_bento
    reply = httpx.post(f"{base}/predict", json={"inputs": {"text": SENTENCES[:5]}}, timeout=30)
    assert reply.status_code == 200, reply.text
    shipped = result.path / "model" / "model.onnx"
    np.testing.assert_allclose(reply.json()["outputs"]["embedding"], text_reference(shipped, tokenizer, SENTENCES[:5]),
                               atol=1e-5)
    assert "text: tokenizer.json beside the model" in (result.path / "report.md").read_text()
    schema = json.dumps(__import__("yaml").safe_load((result.path / "bento" / "bento.yaml").read_text())["schema"])
    assert "/predict_batch" not in schema  # raw token batches would skip the tokenizer


# ---- the Lambda handler ------------------------------------------------------------------


@pytest.fixture(scope="module")
@heavy
def lambda_builds(tmp_path_factory: pytest.TempPathFactory, short_timing):
    folder = tmp_path_factory.mktemp("processing-lambda")
    image, image_model = image_build(folder / "image", "aws-lambda")
    text, _, tokenizer = text_build(folder / "text", "aws-lambda")
    return {"image": (image, image_model, folder), "text": (text, tokenizer)}


def test_the_lambda_zip_ships_the_processing_and_its_libraries_alone(lambda_builds) -> None:
    for kind, library in (("image", "PIL/"), ("text", "tokenizers/")):
        result = lambda_builds[kind][0]
        names = zipfile.ZipFile(result.path / "lambda" / "function.zip").namelist()
        assert any(n.startswith(library) for n in names), kind
        assert any(n.startswith("processing/") for n in names)
        assert not any(n.startswith(("huggingface_hub/", "bentoml/")) for n in names)
        # The cold start was measured on the zip's packages, sending the processing's sample.
        assert result.cold_start.runs == COLD_START_RUNS and result.cold_start.seconds > 0


def test_the_lambda_handler_answers_an_image_body_and_json_text(lambda_builds) -> None:
    image, model, folder = lambda_builds["image"]
    png = photo_png(folder / "photo.png")
    labels, probabilities = expected_classes(model, png)
    with LambdaRuntime(image.path / "lambda" / "app") as api:
        event = {"body": base64.b64encode(png).decode(), "isBase64Encoded": True,
                 "headers": {"content-type": "image/png"}, "requestContext": {"http": {"method": "POST"}}}
        status, reply = api.invoke(event)
        assert status == "response" and reply["statusCode"] == 200, reply
        outputs = json.loads(reply["body"])["outputs"]
        assert outputs["top_labels"] == [labels]
        np.testing.assert_allclose(outputs["top_probabilities"][0], probabilities, rtol=1e-4)
        bad = {**event, "body": base64.b64encode(b"not an image").decode()}
        status, reply = api.invoke(bad)
        assert reply["statusCode"] == 400
        assert json.loads(reply["body"]) == {"error": {"message": "input 'image' row 0 is not a PNG or JPEG image"}}

    text, tokenizer = lambda_builds["text"]
    with LambdaRuntime(text.path / "lambda" / "app") as api:
        status, body = api.invoke({"inputs": {"text": SENTENCES[:3]}})
        assert status == "response", body
        expected = text_reference(text.path / "model" / "model.onnx", tokenizer, SENTENCES[:3])
        np.testing.assert_allclose(body["outputs"]["embedding"], expected, atol=1e-5)


def _function_python() -> bool:
    from mlpack.awslambda.measure import find_python

    return find_python("3.12") is not None


@pytest.mark.requires_tool("python3.12", present=_function_python,
                           hint="the function's Python (3.12); set MLPACK_LAMBDA_PYTHON or install python3.12")
def test_the_zips_own_pillow_decodes_png_and_jpeg_after_pruning(lambda_builds, tmp_path: Path) -> None:
    """The zip leaves out the parts of Pillow PNG and JPEG decoding never load; its handler,
    run from the unzipped zip by the function's Python, still answers both."""
    import io

    from PIL import Image

    from mlpack.awslambda.measure import find_python

    image, model, folder = lambda_builds["image"]
    names = zipfile.ZipFile(image.path / "lambda" / "function.zip").namelist()
    assert not any(n.startswith(("PIL/_avif", "PIL/_webp", "pillow.libs/libavif")) for n in names)
    task = tmp_path / "task"
    zipfile.ZipFile(image.path / "lambda" / "function.zip").extractall(task)
    png = photo_png(folder / "photo.png")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="JPEG", quality=90)
    event = {"inputs": {"image": [base64.b64encode(data).decode() for data in (png, buffer.getvalue())]}}
    probe = ("import json, sys; sys.path.insert(0, '.'); import handler; "
             "print(json.dumps(handler.handler(json.loads(sys.stdin.read()))))")
    done = subprocess.run([find_python("3.12").path, "-I", "-c", probe], cwd=task, input=json.dumps(event), text=True,
                          capture_output=True, env={"PATH": os.environ["PATH"], "MLPACK_AGENT_SOCKET": "/nonexistent"})
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.splitlines()[-1])["outputs"]
    for row, data in enumerate((png, buffer.getvalue())):
        assert answer["top_labels"][row] == expected_classes(model, data)[0]
