"""`mlpack optimize MODEL --target T`: writes the chosen model and its report, prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mlpack.cli import app

from .optimize_models import two_layer_data, two_layer_model


def test_optimize_writes_the_pick_and_the_report_and_prints_the_table(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    data = two_layer_data(tmp_path / "d.npz")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "--target", "aws-lambda",
                                      "--calibration", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "aws-lambda" and report["chosen"] in result.output
    assert "variant" in result.output and "gate" in result.output
    assert (out / "model.onnx").stat().st_size == next(
        c["size_bytes"] for c in report["candidates"] if c["name"] == report["chosen"])
    assert (out / "report.md").read_text().startswith("# Optimization report: aws-lambda")
    html = (out / "report.html").read_text()
    assert "<title>m.onnx: optimization report</title>" in html and f'data-variant="{report["chosen"]}"' in html
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str((out / "report.html").resolve())


def test_gate_options_change_the_thresholds(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--out", str(out),
                                      "--gate", "min_cosine_mean=1.0", "--gate", "min_cosine_min=1.0"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["min_cosine_min"] == 1.0
    assert report["chosen"].startswith("float")  # nothing int8 is bit-exact
    assert "synthetic" in report["data_source"]


def test_bad_calibration_and_bad_options_are_one_line_errors_and_write_nothing(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 3), np.float32))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--out", str(out),
                                      "--calibration", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2
    assert "calibration input 'x' has shape [4, 3]; expected float32 [batch, 64]" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--gate", "min_cosine_mean=2"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --gate min_cosine_mean: Input should be less than or equal to 1;")


def test_a_pinned_variant_skips_the_search_and_the_report_says_which_were_not_made(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    data = two_layer_data(tmp_path / "d.npz")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--out", str(out),
                                      "--calibration", str(data), "--variant", "dynamic-int8"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] == "dynamic-int8"
    assert [c["name"] for c in report["candidates"]] == ["float", "float-optimized", "dynamic-int8"]
    not_made = [s["name"] for s in report["skipped"] if s["why"] == "not made: --variant dynamic-int8 pins the pick"]
    assert not_made == ["stored-int8", "dynamic-int8-per-tensor", "smooth-int8", "static-int8", "compact-int8",
                        "mixed-int8", "pruned", "pruned-int8"]
    assert "not made, --variant dynamic-int8 pins the pick: stored-int8, dynamic-int8-per-tensor, smooth-int8," in result.output
