"""Bundled processing, as the service runs it: text through the artifact's tokenizer,
class names with top-k, PNG/JPEG images through a preprocessing spec, and the user's
hook, each decided and checked at build and recorded in the manifest.

The app folders here are written by mlpack's own build functions (resolve, ship,
write_app) and served by `ServedModel`, the object the Bento and the Lambda handler call;
tests/test_processing_serve.py serves the same through BentoML and awslambdaric.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlpack.errors import InputError
from mlpack.model.info import inspect_model, sha256_file
from mlpack.processing import ProcessingRequest, resolve_processing, sentence_calibration
from mlpack.runtime import RequestError

from .models import linear_model
from .processing_models import (
    IMAGE_CLASSES, IMAGE_SPEC, POSITIONS, SENTENCES, hook_module, image_classifier, photo_png,
    reference_pixels, served_app, text_classifier, text_encoder, text_reference, train_tokenizer, vocab_size,
    write_labels,
)

SETTINGS = {"execution_providers": ["CPUExecutionProvider"]}


@pytest.fixture
def encoder(tmp_path: Path) -> tuple[Path, Path]:
    """A sentence encoder exported with its tokenizer.json beside it, as optimum-cli writes them."""
    tokenizer = train_tokenizer(tmp_path / "tokenizer.json")
    return text_encoder(tmp_path / "model.onnx", vocab_size(tokenizer)), tokenizer


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run(model: Path, feeds: dict) -> list:
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)


# ---- text ------------------------------------------------------------------------------


def test_a_sentence_encoder_with_its_tokenizer_answers_raw_sentences(encoder, tmp_path: Path) -> None:
    model, tokenizer = encoder
    served, manifest = served_app(tmp_path / "served", model)
    assert served.signature.inputs == [{"name": "text", "dtype": "object", "shape": ["batch"]}]
    assert served.signature.outputs == [{"name": "embedding", "dtype": "float32", "shape": ["batch", 16]}]
    answer = np.array(served.predict({"text": SENTENCES})["embedding"])
    expected = text_reference(model, tokenizer, SENTENCES)
    assert cosine(answer, expected).min() >= 0.9999
    np.testing.assert_allclose(answer, expected, atol=1e-6)
    step = manifest.processing.preprocess
    assert step.found == "tokenizer.json beside the model"
    assert step.tokenizer.sha256 == sha256_file(tokenizer)
    assert step.feeds == {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "type_ids"}


def test_rows_are_padded_to_the_longest_and_cut_at_the_models_limit(encoder, tmp_path: Path) -> None:
    model, _ = encoder
    served, manifest = served_app(tmp_path / "served", model)
    long_text = " ".join(SENTENCES)  # far more tokens than the position table has rows
    feeds = served.processing.preprocess({"text": np.array(["Short text.", long_text], dtype=object)})
    step = manifest.processing.preprocess
    assert (step.max_length, step.max_length_from, step.padding) == (
        POSITIONS, "the model's position embeddings", "longest")
    assert feeds["input_ids"].shape == (2, POSITIONS) and feeds["input_ids"].dtype == np.int64
    short = int(feeds["attention_mask"][0].sum())
    assert feeds["attention_mask"][1].all() and short < POSITIONS
    assert (feeds["input_ids"][0, short:] == 0).all()  # [PAD] is id 0 in this vocabulary


def test_the_tokenizers_own_truncation_applies_when_it_is_shorter(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(tmp_path / "tokenizer.json", truncation=8)
    model = text_encoder(tmp_path / "model.onnx", vocab_size(tokenizer))
    resolved = resolve_processing(ProcessingRequest(), inspect_model(model), SETTINGS)
    assert (resolved.section.preprocess.max_length, resolved.section.preprocess.max_length_from) == (
        8, "tokenizer.json's truncation")


def test_tokenizer_none_leaves_a_tokenizer_beside_the_model_alone(encoder) -> None:
    model, _ = encoder
    assert resolve_processing(ProcessingRequest(tokenizer="none"), inspect_model(model), SETTINGS) is None


def test_a_tokenizer_for_a_model_that_takes_no_token_ids_is_one_line(encoder, tmp_path: Path) -> None:
    _, tokenizer = encoder
    model = linear_model(tmp_path / "linear.onnx")
    with pytest.raises(InputError, match=r"model input 'x' is not one a tokenizer fills"):
        resolve_processing(ProcessingRequest(tokenizer=str(tokenizer)), inspect_model(model), SETTINGS)
    (tmp_path / "broken.json").write_text('{"version": "1.0"}')
    with pytest.raises(InputError, match=r"broken.json is not a Hugging Face tokenizer file"):
        resolve_processing(ProcessingRequest(tokenizer=str(tmp_path / "broken.json")), inspect_model(model), SETTINGS)


def test_text_that_is_not_a_string_gets_a_request_error_naming_the_row(encoder, tmp_path: Path) -> None:
    served, _ = served_app(tmp_path / "served", encoder[0])
    with pytest.raises(RequestError, match=r"input 'text' has values of type int64: expected string \[\?\]"):
        served.predict({"text": [1, 2]})
    with pytest.raises(RequestError, match=r"input 'text' row 1 is not UTF-8 text"):
        served.infer({"text": np.array([b"fine", b"\xff\xfe"], dtype=object)})


def test_calibration_sentences_are_tokenized_as_the_service_tokenizes(encoder, tmp_path: Path) -> None:
    model, _ = encoder
    (tmp_path / "sentences.txt").write_text("\n".join(SENTENCES[:4]) + "\n\n   \n" + SENTENCES[4] + "\n")
    resolved = resolve_processing(ProcessingRequest(), inspect_model(model), SETTINGS)
    path = sentence_calibration(tmp_path / "sentences.txt", resolved, tmp_path / "calibration")
    served, _ = served_app(tmp_path / "served", model)
    expected = served.processing.preprocess({"text": np.array(SENTENCES[:5], dtype=object)})
    with np.load(path) as data:
        assert sorted(data.files) == sorted(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(data[name], array)  # 5 rows: blank lines are skipped


def test_sentences_for_calibration_need_a_tokenizer(tmp_path: Path) -> None:
    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    (tmp_path / "sentences.txt").write_text("One sentence.\n")
    request = BuildRequest(model=linear_model(tmp_path / "linear.onnx"), target="x86-cpu", out=tmp_path / "out",
                           calibration=tmp_path / "sentences.txt")
    with pytest.raises(InputError, match=r"sentences.txt holds sentences, which need a tokenizer"):
        build(request, Progress(quiet=True))
    assert not (tmp_path / "out" / "linear-x86-cpu").exists()


# ---- labels ----------------------------------------------------------------------------


def test_labels_give_the_top_class_and_the_top_k_with_probabilities(encoder, tmp_path: Path) -> None:
    _, tokenizer = encoder
    model = text_classifier(tmp_path / "classifier.onnx", vocab_size(tokenizer))
    names = ["negative", "neutral", "positive"]
    request = ProcessingRequest(tokenizer=str(tokenizer), labels=str(write_labels(tmp_path / "l.txt", names)), top_k=2)
    served, manifest = served_app(tmp_path / "served", model, request)
    post = manifest.processing.postprocess
    assert (post.output, post.scores, post.count, post.top_k) == ("logits", "logits", 3, 2)
    assert served.signature.output_names() == ["label", "top_labels", "top_probabilities"]
    answer = served.predict({"text": SENTENCES[:4]})
    logits = text_reference(model, tokenizer, SENTENCES[:4])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)[:, :2]
    assert answer["label"] == [names[i] for i in order[:, 0]]
    assert answer["top_labels"] == [[names[i] for i in row] for row in order]
    np.testing.assert_allclose(answer["top_probabilities"], np.take_along_axis(probabilities, order, 1), rtol=1e-5)


def test_scores_that_are_already_probabilities_get_no_softmax(tmp_path: Path) -> None:
    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    request = ProcessingRequest(labels=str(write_labels(tmp_path / "labels.txt", IMAGE_CLASSES)),
                                image_preprocess=tmp_path / "spec.toml")
    served, manifest = served_app(tmp_path / "served", model, request)
    assert manifest.processing.postprocess.scores == "probabilities"
    png = photo_png(tmp_path / "photo.png")
    probabilities = run(model, {"pixels": reference_pixels(png)})[0][0]
    answer = served.predict_upload(png)
    assert answer["label"] == [IMAGE_CLASSES[int(np.argmax(probabilities))]]
    np.testing.assert_allclose(answer["top_probabilities"][0], np.sort(probabilities)[::-1], rtol=1e-5)


def test_labels_that_do_not_fit_the_model_are_one_line(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(tmp_path / "tokenizer.json")
    info = inspect_model(text_classifier(tmp_path / "classifier.onnx", vocab_size(tokenizer)))
    five = write_labels(tmp_path / "five.txt", list("abcde"))
    with pytest.raises(InputError, match=r"no model output gives one score per class for 5 labels \(outputs: "
                                         r"logits float32 \[batch, 3\]\)"):
        resolve_processing(ProcessingRequest(labels=str(five)), info, SETTINGS)
    (tmp_path / "gap.txt").write_text("a\n\nb\nc\n")
    with pytest.raises(InputError, match=r"labels file gap.txt has an empty line 2"):
        resolve_processing(ProcessingRequest(labels=str(tmp_path / "gap.txt")), info, SETTINGS)
    with pytest.raises(InputError, match=r"--labels model: the model carries no class labels"):
        resolve_processing(ProcessingRequest(labels="model"), info, SETTINGS)


@pytest.mark.slow
@pytest.mark.parametrize("zipmap", [False, True], ids=["probability-tensor", "zipmap"])
def test_a_scikit_learn_classifier_answers_its_own_string_classes(tmp_path: Path, zipmap: bool) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    names = np.array(iris.target_names)[iris.target]
    classifier = LogisticRegression(max_iter=500).fit(iris.data.astype(np.float32), names)
    onnx_model = to_onnx(classifier, iris.data[:1].astype(np.float32), options={"zipmap": zipmap})
    path = tmp_path / "iris.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    served, manifest = served_app(tmp_path / "served", path, ProcessingRequest(labels="model", top_k=3))
    probe = iris.data[::10].astype(np.float32)
    answer = served.predict({served.signature.input_names()[0]: probe.tolist()})
    assert answer["label"] == classifier.predict(probe).tolist()
    np.testing.assert_allclose(answer["top_probabilities"],
                               np.sort(classifier.predict_proba(probe), axis=1)[:, ::-1], atol=1e-4)
    assert manifest.processing.postprocess.source.startswith("the model's")


# ---- images ----------------------------------------------------------------------------


@pytest.fixture
def image_app(tmp_path: Path):
    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    served, manifest = served_app(tmp_path / "served", model, ProcessingRequest(image_preprocess=tmp_path / "spec.toml"))
    return served, manifest, model


def test_an_uploaded_png_is_answered_as_the_model_answers_the_preprocessed_array(image_app, tmp_path: Path) -> None:
    served, manifest, model = image_app
    # "content": "file": the Open Inference Protocol keeps this input's BYTES as bytes.
    assert served.signature.inputs == [{"name": "image", "dtype": "object", "shape": ["batch"], "content": "file"}]
    assert manifest.processing.preprocess.feed == "pixels"
    png = photo_png(tmp_path / "photo.png")
    expected = run(model, {"pixels": reference_pixels(png)})[0]
    np.testing.assert_allclose(served.predict_upload(png)["probabilities"], expected, rtol=1e-5, atol=1e-6)
    as_json = served.predict({"image": [base64.b64encode(png).decode()]})  # JSON: base64 text
    np.testing.assert_allclose(as_json["probabilities"], expected, rtol=1e-5, atol=1e-6)


def test_a_jpeg_upload_is_decoded_and_preprocessed_the_same_way(image_app, tmp_path: Path) -> None:
    from PIL import Image

    served, _, model = image_app
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_png(tmp_path / "photo.png"))).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    expected = run(model, {"pixels": reference_pixels(jpeg)})[0]
    np.testing.assert_allclose(served.predict_upload(jpeg)["probabilities"], expected, rtol=1e-5, atol=1e-6)


def test_what_is_not_a_png_or_jpeg_gets_a_request_error_naming_the_row(image_app, tmp_path: Path) -> None:
    served, _, _ = image_app
    with pytest.raises(RequestError, match=r"input 'image' row 0 is not a PNG or JPEG image"):
        served.predict_upload(b"GIF89a not an image we take")
    png = base64.b64encode(photo_png(tmp_path / "photo.png")).decode()
    with pytest.raises(RequestError, match=r"input 'image' row 1 is text but not base64"):
        served.predict({"image": [png, "not base64!"]})
    with pytest.raises(RequestError, match=r"input 'image' row 1 is a truncated or corrupt PNG image"):
        served.predict({"image": [png, png[: len(png) // 2 // 4 * 4]]})


def test_channel_order_layout_and_dtype_follow_the_spec() -> None:
    from PIL import Image

    from mlpack.runtime.processing.image import ImagePreprocess

    pixels = np.array([[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [100, 110, 120]]], np.uint8)  # 2x2 RGB
    spec = {"size": [2, 2], "resize": None, "resample": "nearest", "channels": "BGR", "scale": 255.0,
            "mean": None, "std": None, "layout": "NHWC", "dtype": "uint8"}
    step = ImagePreprocess({"input": "image", "feed": "x", "spec": spec})
    np.testing.assert_array_equal(step.pixels(Image.fromarray(pixels, "RGB")), pixels[:, :, ::-1])
    spec.update(channels="RGB", layout="NCHW", dtype="float32", scale=10.0, mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0])
    step = ImagePreprocess({"input": "image", "feed": "x", "spec": spec})
    expected = ((pixels / 10.0 - [1.0, 2.0, 3.0]) / 2.0).transpose(2, 0, 1)
    np.testing.assert_allclose(step.pixels(Image.fromarray(pixels, "RGB")), expected, rtol=1e-6)


def test_an_image_spec_names_every_problem_by_key(tmp_path: Path) -> None:
    info = inspect_model(image_classifier(tmp_path / "image.onnx"))
    (tmp_path / "bad.toml").write_text('size = [32]\nlayout = "NCWH"\ncolour = "red"\nscale = 0\n')
    with pytest.raises(InputError) as raised:
        resolve_processing(ProcessingRequest(image_preprocess=tmp_path / "bad.toml"), info, SETTINGS)
    message = raised.value.one_line()
    assert message.startswith("invalid image preprocessing spec bad.toml: size: ")
    for key in ("layout: ", "colour: Extra inputs are not permitted", "scale: "):
        assert key in message
    (tmp_path / "misfit.toml").write_text('size = [28, 28]\nchannels = "L"\ndtype = "uint8"\n')
    with pytest.raises(InputError) as raised:
        resolve_processing(ProcessingRequest(image_preprocess=tmp_path / "misfit.toml"), info, SETTINGS)
    assert raised.value.one_line() == (
        "image preprocessing spec misfit.toml does not fit model input 'pixels' (float32 [batch, 3, 32, 32]): "
        "channels: L gives 1 channel(s), the input takes 3 in layout NCHW; size: [28, 28] but the input takes "
        "[32, 32]; dtype: uint8 but the input takes float32; fix the keys named above (docs/processing.md lists them)")


# ---- hooks -----------------------------------------------------------------------------

HOOK = """\
import numpy as np

INPUTS = [{"name": "fahrenheit", "dtype": "float32", "shape": ["batch", 4]}]


def preprocess(inputs):
    return {"x": (inputs["fahrenheit"] - 32.0) / 1.8}


def postprocess(outputs):
    y = outputs["y"]
    return {"best": y.argmax(axis=1), "y": y}
"""


def test_a_hook_runs_around_the_model_and_ships_with_its_hash(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    hook = hook_module(tmp_path / "temperatures.py", HOOK)
    served, manifest = served_app(tmp_path / "served", model, ProcessingRequest(hook=hook))
    step = manifest.processing.preprocess
    assert step == manifest.processing.postprocess and step.kind == "hook"
    assert (step.module.path, step.module.sha256) == ("processing/temperatures.py", sha256_file(hook))
    assert (step.inputs_from, step.outputs_from) == ("INPUTS in the module", "the answer to the sample input")
    assert served.signature.outputs == [{"name": "best", "dtype": "int64", "shape": ["batch"]},
                                        {"name": "y", "dtype": "float32", "shape": ["batch", 3]}]
    fahrenheit = np.random.default_rng(0).uniform(0, 100, (3, 4)).astype(np.float32)
    answer = served.predict({"fahrenheit": fahrenheit.tolist()})
    y = run(model, {"x": (fahrenheit - 32.0) / 1.8})[0]
    np.testing.assert_allclose(answer["y"], y, rtol=1e-5)
    assert answer["best"] == y.argmax(axis=1).tolist()
    assert (served.folder / "processing" / "temperatures.py").read_bytes() == hook.read_bytes()


def test_a_hook_that_raises_value_error_refuses_the_request(tmp_path: Path) -> None:
    hook = hook_module(tmp_path / "strict.py", """\
        def preprocess(inputs):
            if (inputs["x"] < 0).any():
                raise ValueError("x must not be negative")
            return inputs
    """)
    served, _ = served_app(tmp_path / "served", linear_model(tmp_path / "linear.onnx"), ProcessingRequest(hook=hook))
    with pytest.raises(RequestError, match=r"^preprocess: x must not be negative$"):
        served.predict({"x": [[-1.0, 0.0, 0.0, 0.0]]})


@pytest.mark.parametrize("body, message", [
    ("def preprocess(inputs):\n    return {'x': inputs['missing']}\n",
     "broken.py's preprocess fails on the sample input: KeyError: 'missing'"),
    ("def preprocess(inputs):\n    return {'x': inputs['x'][:, :2]}\n",
     "broken.py's preprocess gives the model inputs it does not take: input 'x' has shape [1, 2]"),
    ("def postprocess(outputs):\n    return {'y': object()}\n",
     "broken.py's postprocess fails on the model's answer to the sample: TypeError"),
    ("import not_a_module_anyone_has\n", "processing module broken.py fails to import: ModuleNotFoundError"),
    ("VALUE = 1\n", "processing module broken.py defines neither preprocess nor postprocess"),
])
def test_a_hook_that_fails_its_build_check_is_one_line(tmp_path: Path, body: str, message: str) -> None:
    hook = hook_module(tmp_path / "broken.py", body)
    info = inspect_model(linear_model(tmp_path / "linear.onnx"))
    with pytest.raises(InputError) as raised:
        resolve_processing(ProcessingRequest(hook=hook), info, SETTINGS)
    assert message in raised.value.one_line()
    assert "\n" not in raised.value.one_line()


def test_two_steps_for_the_same_side_are_refused(encoder, tmp_path: Path) -> None:
    model, tokenizer = encoder
    hook = hook_module(tmp_path / "both.py", "def preprocess(i):\n    return i\ndef postprocess(o):\n    return o\n")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    info = inspect_model(model)
    with pytest.raises(InputError, match=r"--tokenizer and --image-preprocess both preprocess"):
        resolve_processing(ProcessingRequest(tokenizer=str(tokenizer), image_preprocess=tmp_path / "spec.toml"),
                           info, SETTINGS)
    with pytest.raises(InputError, match=r"--labels and --processing both.py \(postprocess\) both postprocess"):
        resolve_processing(ProcessingRequest(labels="model", hook=hook), info, SETTINGS)


# ---- the artifact's record ---------------------------------------------------------------


def test_runtime_json_and_the_manifest_record_the_processing(encoder, tmp_path: Path) -> None:
    from mlpack.manifest import Manifest

    served, manifest = served_app(tmp_path / "served", encoder[0])
    runtime = json.loads((served.folder / "runtime.json").read_text())
    assert runtime["processing"]["inputs"] == served.signature.inputs
    assert runtime["processing"]["preprocess"]["tokenizer"]["path"] == "processing/tokenizer.json"
    again = Manifest.model_validate_json(manifest.to_json())
    assert again.processing == manifest.processing
    assert again.served_signature.inputs[0].name == "text" and again.model.signature.inputs[0].name == "input_ids"


def test_the_hook_docs_processing_md_shows_works_as_documented(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "processing.md").read_text()
    example = docs.split("```python\n", 1)[1].split("```", 1)[0]
    model = linear_model(tmp_path / "linear.onnx")
    served, manifest = served_app(tmp_path / "served", model,
                                  ProcessingRequest(hook=hook_module(tmp_path / "my_processing.py", example)))
    fahrenheit = [[50.0, 60.0, 70.0, 80.0]]
    assert manifest.processing.sample == {"fahrenheit": fahrenheit}  # the module's EXAMPLE
    assert served.signature.output_names() == ["best"]
    y = run(model, {"x": (np.array(fahrenheit, np.float32) - 32.0) / 1.8})[0]
    assert served.predict({"fahrenheit": fahrenheit})["best"] == y.argmax(axis=1).tolist()


def test_every_package_of_an_artifact_with_processing_lists_its_libraries(tmp_path: Path) -> None:
    from mlpack.build.plan import pin_requirements
    from mlpack.render.context import RenderContext
    from mlpack.render.templates import render_artifact

    from .manifests import make_manifest

    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    resolved = resolve_processing(ProcessingRequest(image_preprocess=tmp_path / "spec.toml"), inspect_model(model),
                                  SETTINGS)
    assert [p.split("==")[0] for p in resolved.packages] == ["pillow"]
    for target in ("x86-cpu", "aws-lambda"):
        manifest = make_manifest(target, processing=resolved.section)
        manifest.requirements = pin_requirements(manifest.target, manifest.versions, resolved.packages)
        requirements = render_artifact(RenderContext.from_manifest(manifest))["container/requirements.txt"]
        assert resolved.packages[0] in requirements.splitlines(), target


# ---- the Open Inference Protocol serves the processed signature ----------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_the_v2_protocol_lists_and_answers_text_as_bytes(encoder, tmp_path: Path, binary: bool) -> None:
    import tritonclient.http as triton

    from mlpack.runtime import protocol_v2

    from .protocol_v2_client import infer, result, tensor

    model, tokenizer = encoder
    served, _ = served_app(tmp_path / "served", model)
    metadata = json.loads(protocol_v2.handle(served, "GET", f"/v2/models/{served.name}", {}, b"").body)
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 16]}]
    texts = np.array(SENTENCES[:3], dtype=object)
    answer = result(infer(served, [tensor("text", texts, "BYTES", binary)],
                          [triton.InferRequestedOutput("embedding", binary_data=binary)]))
    np.testing.assert_allclose(answer.as_numpy("embedding"), text_reference(model, tokenizer, SENTENCES[:3]),
                               atol=1e-6)


def test_the_v2_protocol_takes_image_bytes_and_answers_class_names(tmp_path: Path) -> None:
    from .protocol_v2_client import infer, result, tensor

    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    request = ProcessingRequest(image_preprocess=tmp_path / "spec.toml", top_k=2,
                                labels=str(write_labels(tmp_path / "labels.txt", IMAGE_CLASSES)))
    served, _ = served_app(tmp_path / "served", model, request)
    png = photo_png(tmp_path / "photo.png")
    answer = result(infer(served, [tensor("image", np.array([png], dtype=object), "BYTES", True)]))
    probabilities = run(model, {"pixels": reference_pixels(png)})[0][0]
    best = [IMAGE_CLASSES[i].encode() for i in np.argsort(-probabilities)[:2]]
    assert answer.as_numpy("top_labels").tolist() == [best]
    np.testing.assert_allclose(answer.as_numpy("top_probabilities")[0], np.sort(probabilities)[::-1][:2], rtol=1e-5)


# ---- the command line ------------------------------------------------------------------------


def test_inspect_shows_the_processing_and_the_served_signature(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlpack.cli import app

    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text(IMAGE_SPEC)
    labels = write_labels(tmp_path / "labels.txt", IMAGE_CLASSES)
    result = CliRunner().invoke(app, ["inspect", str(model), "--image-preprocess", str(tmp_path / "spec.toml"),
                                      "--labels", str(labels), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[lines.index("processing") + 1].startswith("  image: PNG/JPEG -> shorter side to 40, centre 32x32")
    assert lines[lines.index("processing") + 2] == (
        "  labels: 4 classes from --labels labels.txt; top 3 of probabilities (probabilities)")
    assert lines[lines.index("served (after processing)") + 1:] == [
        "  input   image: object [batch]", "  output  label: object [batch]",
        "  output  top_labels: object [batch, 3]", "  output  top_probabilities: float32 [batch, 3]"]


def test_a_bad_processing_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlpack.cli import app

    model = image_classifier(tmp_path / "image.onnx")
    (tmp_path / "spec.toml").write_text('size = [32, 32]\nlayout = "NWHC"\n')
    result = CliRunner().invoke(app, ["build", str(model), "-t", "x86-cpu", "-o", str(tmp_path / "out"),
                                      "--image-preprocess", str(tmp_path / "spec.toml")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid image preprocessing spec spec.toml: layout: Input should be ")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
