"""Calibration data is checked against the model before anything is written: a mismatch
is one line naming the input and the shape expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mlpack.errors import InputError
from mlpack.model.info import inspect_model
from mlpack.optimize import optimize_model
from mlpack.optimize.data import load_data, synthetic_data
from mlpack.targets import load_target

from .optimize_models import embedding_model, two_layer_model

GOOD = np.zeros((8, 64), np.float32)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return two_layer_model(tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"pixels": GOOD}, "has array 'pixels', which is not a model input"),
        ({}, "lacks input 'x' (expected float32 [batch, 64])"),
        ({"x": np.zeros((8, 63), np.float32)}, "input 'x' has shape [8, 63]; expected float32 [batch, 64]"),
        ({"x": np.zeros((8, 64, 1), np.float32)}, "input 'x' has shape [8, 64, 1]; expected float32 [batch, 64]"),
        ({"x": np.zeros((8, 64), np.float64)}, "input 'x' has dtype float64; expected float32 [batch, 64]"),
        ({"x": np.zeros((0, 64), np.float32)}, "input 'x' is empty; expected float32 [batch, 64]"),
        ({"x": GOOD, "labels": np.zeros(7, np.int64)}, "labels have shape [7]; expected [8]"),
        ({"x": GOOD, "y": np.zeros(7, np.int64)}, "labels have shape [7]; expected [8]"),
        ({"x": GOOD, "y": np.zeros(8, np.int64), "labels": np.zeros(8, np.int64)},
         "has labels under both labels and y"),
    ],
)
def test_bad_calibration_data_is_one_line_naming_the_input_and_nothing_is_written(
    tmp_path: Path, model: Path, arrays: dict, message: str
) -> None:
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    work = tmp_path / "work"
    with pytest.raises(InputError) as caught:
        optimize_model(inspect_model(model), load_target("x86-cpu"), work, data_path=data)
    assert message in caught.value.one_line()
    assert "\n" not in caught.value.one_line()
    assert not work.exists()


def test_labels_may_be_saved_under_y_as_scikit_learn_names_them(tmp_path: Path, model: Path) -> None:
    data = tmp_path / "data.npz"
    labels = np.arange(8) % 3
    np.savez(data, x=GOOD, y=labels)
    loaded = load_data(data, inspect_model(model).signature)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert set(loaded.inputs) == {"x"}


def test_a_file_that_is_not_an_npz_is_refused(tmp_path: Path, model: Path) -> None:
    data = tmp_path / "data.npz"
    data.write_text("not numpy")
    with pytest.raises(InputError, match="is not a readable .npz"):
        load_data(data, inspect_model(model).signature)
    with pytest.raises(InputError, match="does not exist"):
        load_data(tmp_path / "missing.npz", inspect_model(model).signature)


def test_rows_must_agree_across_inputs(tmp_path: Path) -> None:
    info = inspect_model(embedding_model(tmp_path / "e.onnx"))
    data = tmp_path / "d.npz"
    np.savez(data, ids=np.zeros((8, 5), np.int64))
    assert load_data(data, info.signature).rows == 8
    np.savez(data, ids=np.zeros((8, 5), np.int32))
    with pytest.raises(InputError, match="'ids' has dtype int32; expected int64 \\[batch, seq\\]"):
        load_data(data, info.signature)


def test_synthetic_indices_stay_inside_their_embedding_table(tmp_path: Path) -> None:
    path = embedding_model(tmp_path / "e.onnx")
    data = synthetic_data(onnx.load(str(path)), inspect_model(path).signature)
    assert data.synthetic and data.inputs["ids"].dtype == np.int64
    assert data.inputs["ids"].max() < 2048 and data.inputs["ids"].max() > 100
