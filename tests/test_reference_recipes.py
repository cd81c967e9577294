"""The other tools' recipes the benchmarks compare mlpack with (benchmarks/reference_recipes.py):
made on the optimizer's own rows, NNCF validated by mlpack's own gate, and a recipe that breaks
on a model is a one-line result, not a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.reference_recipes import HeldOutGate, make_references
from mlpack.model.info import inspect_model
from mlpack.optimize import GateSettings, make_candidates
from mlpack.optimize.data import EvalData
from mlpack.optimize.run import Run

from .optimize_models import two_layer_data, two_layer_model, with_variants


@pytest.fixture(scope="module")
def outlier_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """An optimization of `two_layer_model` whose `second` layer has an outlier weight that int8
    per-channel scales follow: every recipe that quantizes it fails mlpack's gate."""
    folder = tmp_path_factory.mktemp("outliers")
    model = two_layer_model(folder / "m.onnx", outliers=("second",))
    return model, make_candidates(inspect_model(model), with_variants("x86-cpu"), folder / "work",
                                  data_path=two_layer_data(folder / "d.npz"))


def test_nncf_may_lose_what_the_gate_allows_of_its_metric() -> None:
    rows = EvalData({"x": np.zeros((5, 4), np.float32)}, None, "rows", False)
    reference = [np.arange(40, dtype=np.float32).reshape(5, 8)]  # an embedding
    gate = HeldOutGate(rows, reference, ["y"], GateSettings(min_cosine_mean=0.97), lambda path, data: reference)
    assert gate.max_drop() == pytest.approx(0.03)  # 1 - min_cosine_mean
    with_classes = HeldOutGate(rows, reference + [np.eye(5, 3, dtype=np.float32)], ["y", "probabilities"],
                               GateSettings(min_cosine_mean=0.97, min_top1_agreement=0.98), gate.outputs)
    assert with_classes.max_drop() == pytest.approx(0.02)  # the strictest output decides
    assert gate.validate(onnx.ModelProto(), range(5)) == (1.0, [1.0] * 5)  # float against itself


@pytest.mark.slow
def test_nncf_keeps_in_float_the_layer_int8_breaks_and_passes_the_gate(outlier_run: tuple[Path, Run],
                                                                      tmp_path: Path) -> None:
    model, run = outlier_run
    made = {m.name: m for m in make_references(["ort-static-pc", "nncf-qwac"], model, run, tmp_path)}
    static = run.add_reference("ort-static-pc", made["ort-static-pc"].path, made["ort-static-pc"].recipe)
    nncf = run.add_reference("nncf-qwac", made["nncf-qwac"].path, made["nncf-qwac"].recipe)
    assert not static.passed
    assert nncf.passed and nncf.reference, nncf.reason
    assert "max_drop 0.01" in nncf.recipe and "calibrated on the optimizer's 24 real rows" in nncf.recipe


@pytest.mark.slow
def test_a_recipe_that_breaks_on_a_model_says_why_in_one_line(outlier_run: tuple[Path, Run], tmp_path: Path) -> None:
    (broken := tmp_path / "broken.onnx").write_bytes(b"not a model")
    [made] = make_references(["ort-static-pc"], broken, outlier_run[1], tmp_path)
    assert made.path is None and made.failure and "\n" not in made.failure
