"""Every common ONNX model shape is read, optimized and gated: ZipMap (seq(map)) outputs,
string tensors in and out, inputs with defaults and optional inputs, external data, and
locale-dependent operators. (Serving them on every target: test_model_shapes_serve.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.model.info import inspect_model
from mlpack.optimize import optimize_model
from mlpack.targets import load_target

from . import shape_models as shapes
from .demo_data import held_out

# These models take microseconds; the gate, not the timing, is under test here.
pytestmark = pytest.mark.usefixtures("short_timing")


def inspect_lines(model: Path) -> list[str]:
    result = CliRunner().invoke(app, ["inspect", str(model)])
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


# ---- ZipMap: seq(map(class, probability)) ------------------------------------------


def test_inspect_shows_a_zipmap_output_as_one_class_map_per_row(tmp_path: Path) -> None:
    model, _ = shapes.zipmap_classifier(tmp_path / "iris.onnx")
    lines = inspect_lines(model)
    assert "  output  output_label: int64 [?]" in lines
    assert ("  output  output_probability: seq(map(int64,tensor(float))): a {class: probability} map per row "
            "(3 classes: 0, 1, 2); served as those maps, gated as a [rows, classes] probability table") in lines


@pytest.mark.slow
def test_a_zipmap_classifier_is_gated_as_its_probability_table(tmp_path: Path) -> None:
    model, clf = shapes.zipmap_classifier(tmp_path / "iris.onnx")
    x, y = shapes.iris()
    np.savez(tmp_path / "data.npz", X=x, labels=y)
    result = optimize_model(inspect_model(model), load_target("x86-cpu"), tmp_path / "work",
                            data_path=tmp_path / "data.npz")
    for candidate in result.candidates:
        assert candidate.passed, candidate.reason
    float_metrics = result.candidates[0].metrics
    assert float_metrics["output_probability.top1_agreement"] == 1.0
    assert float_metrics["output_label.agreement"] == 1.0
    assert float_metrics["float_accuracy"] == pytest.approx(np.mean(clf.predict(held_out(x)) == held_out(y)))
    assert any("compared as a probability table" in note for note in result.notes)


def test_probability_tables_keep_class_order_and_catch_a_missing_class() -> None:
    from mlpack.runtime.values import as_array, as_table

    rows = [{2: 0.1, 0: 0.7, 1: 0.2}, {0: 0.0, 1: 0.5, 2: 0.5}]
    np.testing.assert_allclose(as_array(rows), [[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
    table, columns = as_table([{"b": 0.4, "a": 0.6}])
    assert columns == ["a", "b"] and table.tolist() == [[0.6, 0.4]]
    partial, _ = as_table([{0: 1.0}], columns=[0, 1])
    assert np.isnan(partial[0, 1])


# ---- string tensors and string labels ------------------------------------------------


def test_string_labels_are_gated_by_agreement(tmp_path: Path) -> None:
    model, clf = shapes.string_label_classifier(tmp_path / "names.onnx")
    x, y = shapes.iris()
    np.savez(tmp_path / "data.npz", X=x, labels=shapes.CLASS_NAMES[y])
    result = optimize_model(inspect_model(model), load_target("aws-lambda"), tmp_path / "work",
                            data_path=tmp_path / "data.npz")
    metrics = result.candidates[0].metrics
    assert metrics["output_label.agreement"] == 1.0
    names = shapes.CLASS_NAMES[y]
    assert metrics["float_accuracy"] == pytest.approx(np.mean(clf.predict(held_out(x)) == held_out(names)))


@pytest.mark.slow
def test_inspect_shows_string_inputs_and_the_locale_rewrite(tmp_path: Path) -> None:
    model, _ = shapes.text_classifier(tmp_path / "text.onnx")
    lines = inspect_lines(model)
    assert "  input   text: string [?, 1]" in lines
    assert "  output  output_label: string [?]" in lines
    assert ("  locale  StringNormalizer 'StringNormalizer' needs a C library locale: locale en_US.UTF-8, "
            "onnxruntime's default: set to C.UTF-8, which every target has") in lines


def test_a_text_pipeline_gates_on_sentences_from_a_calibration_file(tmp_path: Path) -> None:
    model, pipe = shapes.text_classifier(tmp_path / "text.onnx")
    texts = [t for t, _ in shapes.SENTENCES] + shapes.PROBE_SENTENCES
    # np.savez keeps text as fixed-width unicode arrays (no pickle): mlpack reads them as strings.
    np.savez(tmp_path / "text.npz", text=np.array(texts)[:, None], labels=np.array(pipe.predict(texts)))
    result = optimize_model(inspect_model(model), load_target("x86-cpu"), tmp_path / "work",
                            data_path=tmp_path / "text.npz")
    assert result.data_source == f"calibration data text.npz ({len(texts)} rows)"
    assert result.candidates[0].metrics["float_accuracy"] == 1.0  # ONNX answers as scikit-learn did
    assert all(c.passed for c in result.candidates)
    assert "locale of StringNormalizer set to C.UTF-8" in result.candidates[0].recipe


def test_without_data_string_inputs_are_made_from_the_models_vocabulary(tmp_path: Path) -> None:
    from mlpack.optimize.data import synthetic_data

    model, pipe = shapes.text_classifier(tmp_path / "text.onnx")
    info = inspect_model(model)
    data = synthetic_data(onnx.load(str(model)), info.signature, rows=16)
    text = data.inputs["text"]
    assert text.dtype == object and text.shape == (16, 1)
    vocabulary = set(pipe[0].vocabulary_)
    assert all(set(row.split()) <= vocabulary for row in text[:, 0])
    result = optimize_model(info, load_target("arm-edge"), tmp_path / "work")
    assert "synthetic inputs" in result.data_source and result.chosen.passed


# ---- locale-dependent operators ---------------------------------------------------------


def _normalizer(locale: str | None) -> onnx.ModelProto:
    attributes = {"case_change_action": "LOWER"} | ({"locale": locale} if locale else {})
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("StringNormalizer", ["x"], ["y"], **attributes)], "normalize",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.STRING, [None])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.STRING, [None])])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


@pytest.mark.parametrize("asked", [None, "en_US.UTF-8", "de_DE.UTF-8"])
def test_the_locale_rewrite_keeps_case_folding_of_non_ascii_text(asked: str | None) -> None:
    import onnxruntime as ort

    from mlpack.model.locale_ops import make_portable

    model = _normalizer(asked)
    changed = make_portable(model)
    assert [n.locale for n in changed] == [asked or "en_US.UTF-8"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    words = ["ÜBER", "Café", "NAÏVE", "ΣΟΦΙΑ", "ĲSSEL", "Plain ASCII"]
    # Unicode's simple case mapping, as Python's str.lower() (one-to-one mappings only).
    assert session.run(None, {"x": np.array(words, dtype=object)})[0].tolist() == [w.lower() for w in words]


def test_a_locale_that_exists_everywhere_is_left_alone() -> None:
    from mlpack.model.locale_ops import locale_nodes, make_portable

    model = _normalizer("C.UTF-8")
    assert make_portable(model) == [] and locale_nodes(model)[0].locale == "C.UTF-8"


# ---- inputs with defaults, optional inputs ---------------------------------------------


def test_an_input_with_a_default_is_optional_and_inspect_shows_the_default(tmp_path: Path) -> None:
    model = shapes.defaults_model(tmp_path / "defaults.onnx")
    info = inspect_model(model)
    assert [(s.name, s.optional) for s in info.signature.inputs] == [("x", False), ("scale", True)]
    assert "  input   scale: float32 [1] (optional: default [2.0] when a request leaves it out)" in inspect_lines(model)


def test_an_onnx_optional_input_is_optional(tmp_path: Path) -> None:
    model = shapes.optional_model(tmp_path / "optional.onnx")
    spec = inspect_model(model).signature.inputs[1]
    assert (spec.name, spec.dtype, spec.shape, spec.optional) == ("bias", "float32", ["batch", 3], True)
    assert "  input   bias: float32 [batch, 3] (optional: a request may leave it out)" in inspect_lines(model)


def test_large_initializers_listed_as_inputs_are_weights_not_request_inputs(tmp_path: Path) -> None:
    from mlpack.model.info import read_signature

    model = onnx.load(str(shapes.defaults_model(tmp_path / "defaults.onnx")))
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.ones(4096, np.float32), "scale"))
    model.graph.input[1].CopyFrom(onnx.helper.make_tensor_value_info("scale", onnx.TensorProto.FLOAT, [4096]))
    assert [s.name for s in read_signature(model).inputs] == ["x"]


@pytest.mark.slow
@pytest.mark.parametrize("make", [shapes.defaults_model, shapes.optional_model])
def test_models_with_optional_inputs_are_optimized_on_their_required_inputs(tmp_path: Path, make) -> None:
    model = make(tmp_path / "model.onnx")
    result = optimize_model(inspect_model(model), load_target("x86-cpu"), tmp_path / "work")
    assert result.chosen.passed and "synthetic inputs" in result.data_source


# ---- external data -----------------------------------------------------------------------


def test_inspect_lists_external_data_files_and_their_sizes(tmp_path: Path) -> None:
    model = shapes.external_model(tmp_path / "m")
    size = (tmp_path / "m" / "mlp.onnx.weights").stat().st_size
    from mlpack.sizes import format_size

    assert (f"  weights external data: mlp.onnx.weights ({format_size(size)}); kept external through "
            "optimization, shipped as model.onnx + model.onnx.data") in inspect_lines(model)


@pytest.mark.slow
def test_external_weights_stay_external_through_optimization(tmp_path: Path) -> None:
    from mlpack.model.files import model_paths

    model = shapes.external_model(tmp_path / "m")
    info = inspect_model(model)
    assert info.size_bytes == model.stat().st_size + (tmp_path / "m" / "mlp.onnx.weights").stat().st_size
    result = optimize_model(info, load_target("x86-cpu"), tmp_path / "work")
    made = {c.name: c for c in result.candidates}
    assert {"float", "dynamic-int8", "smooth-int8"} <= set(made)  # smoothing reads the weights from the data file
    for candidate in result.candidates:
        files = model_paths(candidate.path)
        assert [f.name for f in files] == [candidate.path.name, candidate.path.name + ".data"], candidate.name
        assert candidate.size_bytes == sum(f.stat().st_size for f in files)
        assert candidate.path.stat().st_size < 4096, f"{candidate.name} holds its weights inline"
    assert made["dynamic-int8"].size_bytes < made["float"].size_bytes / 2


def test_a_copied_external_model_points_at_its_own_data_file(tmp_path: Path) -> None:
    from mlpack.model.files import copy_model

    model = shapes.external_model(tmp_path / "m")
    (tmp_path / "ship").mkdir()
    written = copy_model(model, tmp_path / "ship" / "model.onnx")
    assert [p.name for p in written] == ["model.onnx", "model.onnx.data"]
    x = np.ones((2, 64), np.float32)
    np.testing.assert_allclose(shapes.run_onnx(written[0], {"x": x})[0], shapes.run_onnx(model, {"x": x})[0])


def test_a_model_over_the_protobuf_limit_is_saved_external(tmp_path: Path, monkeypatch) -> None:
    """The >2 GB path on a small model: past the inline limit, weights go external whatever
    the source was (protobuf cannot hold them inline)."""
    from mlpack.model import files as model_files

    model = onnx.load(str(shapes.defaults_model(tmp_path / "small.onnx")))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(4096, np.float32), "unused"))
    monkeypatch.setattr(model_files, "INLINE_LIMIT", 1000)
    path = model_files.save_model(model, tmp_path / "big.onnx", external=False)
    assert model_files.stored_external(path)
    assert [p.name for p in model_files.model_paths(path)] == ["big.onnx", "big.onnx.data"]


# ---- requests: strings, optional inputs, maps ----------------------------------------------

TEXT = {"name": "text", "dtype": "object", "shape": [None, 1]}
BIAS = {"name": "bias", "dtype": "float32", "shape": [None, 3], "optional": True}
X = {"name": "x", "dtype": "float32", "shape": [None, 3]}


def test_a_string_input_takes_json_strings_and_npz_bytes() -> None:
    from mlpack.runtime.validation import parse_inputs

    parsed = parse_inputs({"text": [["a cat"], ["ÜBER"]]}, [TEXT])["text"]
    assert parsed.dtype == object and parsed.tolist() == [["a cat"], ["ÜBER"]]
    from_npz = parse_inputs({"text": np.array([[b"caf\xc3\xa9"]])}, [TEXT])["text"]
    assert from_npz.dtype == object and from_npz.tolist() == [["café"]]
    # onnxruntime would read bytes objects as their repr ("b'...'"): they arrive decoded.
    v2_bytes = parse_inputs({"text": np.array([[b"caf\xc3\xa9"], ["plain"]], dtype=object)}, [TEXT])["text"]
    assert v2_bytes.tolist() == [["café"], ["plain"]]
    # An input of files (encoded images for the artifact's processing) keeps its bytes.
    image = {"name": "image", "dtype": "object", "shape": [None], "content": "file"}
    assert parse_inputs({"image": np.array([b"\x89PNG"], dtype=object)}, [image])["image"].tolist() == [b"\x89PNG"]


@pytest.mark.parametrize("value, message", [
    ([[1], [2]], "input 'text' has values of type int64: expected string [?, 1]"),
    ([["a"], [None]], "input 'text' mixes strings with other values: expected string [?, 1]"),
    (["a", "b"], "input 'text' has shape [2]: expected string [?, 1]"),
])
def test_a_string_input_refuses_other_values_naming_the_input(value, message) -> None:
    from mlpack.runtime.validation import RequestError, parse_inputs

    with pytest.raises(RequestError) as caught:
        parse_inputs({"text": value}, [TEXT])
    assert str(caught.value) == message


def test_an_optional_input_may_be_left_out_or_null_and_a_required_one_may_not() -> None:
    from mlpack.runtime.validation import RequestError, parse_inputs

    x = [[1.0, 2.0, 3.0]]
    assert set(parse_inputs({"x": x}, [X, BIAS])) == {"x"}
    assert set(parse_inputs({"x": x, "bias": None}, [X, BIAS])) == {"x"}
    assert parse_inputs({"x": x, "bias": x}, [X, BIAS])["bias"].dtype == np.float32
    with pytest.raises(RequestError, match=r"^missing input 'x': expected float32 \[\?, 3\]$"):
        parse_inputs({"bias": x}, [X, BIAS])


def test_map_and_sequence_inputs_take_json_objects_and_lists() -> None:
    from mlpack.runtime.validation import RequestError, parse_inputs

    features = {"name": "features", "dtype": "map(int64,tensor(float))", "shape": None}
    rows = {"name": "rows", "dtype": "seq(map(string,tensor(float)))", "shape": None}
    parsed = parse_inputs({"features": {"1": 0.5, "7": 2}, "rows": [{"a": 1}]}, [features, rows])
    assert parsed == {"features": {1: 0.5, 7: 2.0}, "rows": [{"a": 1.0}]}
    with pytest.raises(RequestError, match=r"^input 'features' does not fit map\(int64,tensor\(float\)\)$"):
        parse_inputs({"features": [1, 2], "rows": []}, [features, rows])


def test_a_zipmap_answer_is_one_class_map_per_row_in_json() -> None:
    import json

    from mlpack.runtime.validation import outputs_to_json

    specs = [{"name": "output_label", "dtype": "int64", "shape": [None]},
             {"name": "output_probability", "dtype": "seq(map(int64,tensor(float)))", "shape": None}]
    answer = outputs_to_json([np.array([0, 2]), [{0: 0.9, 1: 0.1, 2: 0.0}, {0: 0.1, 1: 0.2, 2: 0.7}]], specs)
    assert json.loads(json.dumps(answer)) == {
        "output_label": [0, 2],
        "output_probability": [{"0": 0.9, "1": 0.1, "2": 0.0}, {"0": 0.1, "1": 0.2, "2": 0.7}]}


# ---- onnxruntime's native log stays off the terminal ---------------------------------------

NATIVE_LOG = ("[E:onnxruntime", "[W:onnxruntime", "[I:onnxruntime", "\x1b[")


def mlpack_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """mlpack in a process of its own: onnxruntime's native log writes to file descriptor 2
    directly, which only a real process's stderr shows."""
    import subprocess
    import sys

    mlpack = Path(sys.executable).with_name("mlpack")  # the console script, as a user runs it
    return subprocess.run([str(mlpack), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_a_model_onnxruntime_refuses_is_one_line_on_stderr(tmp_path: Path) -> None:
    model = shapes.unloadable_model(tmp_path / "strings.onnx")
    for command in (["inspect", str(model)], ["optimize", str(model), "-t", "x86-cpu", "-o", str(tmp_path / "o")]):
        result = mlpack_cli(*command, cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: onnxruntime cannot load strings.onnx: [ONNXRuntimeError]")


@pytest.mark.slow
def test_onnxruntime_warnings_do_not_reach_the_terminal_while_optimizing(tmp_path: Path) -> None:
    # onnxruntime warns at load that an initializer is also a graph input (an input with a default).
    model = shapes.defaults_model(tmp_path / "defaults.onnx")
    result = mlpack_cli("optimize", str(model), "-t", "x86-cpu", "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(NATIVE_LOG)], result.stderr
