"""The gate tells the truth about its evidence: without real data no int8 ships (unless the user
allows it) and one console line says so; synthetic inputs take sizes the model accepts
(its downsampling, or --sample-shape); when nothing can be compared, the console and the
manifest say why, whole; weights held in Constant nodes are quantized too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from mlpack.build.run import reason_without_figures
from mlpack.cli import app
from mlpack.model.info import inspect_model
from mlpack.optimize.data import synthetic_data

from .models import pyramid_cnn, save_graph
from .optimize_models import optimize, two_layer_model, with_variants


def console_lines(output: str, start: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(start)]


def test_without_calibration_the_console_says_in_one_line_why_int8_does_not_ship(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "aws-lambda", "--out", str(out)])
    assert result.exit_code == 0, result.output
    [line] = console_lines(result.stdout, "int8 held back:")
    assert "synthetic inputs" in line and "--calibration FILE.npz" in line and "--gate synthetic=allow" in line
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] in ("float", "float-optimized") and report["synthetic"]
    assert report["headline"] == line

    allowed = CliRunner().invoke(app, ["optimize", str(model), "-t", "aws-lambda", "--out", str(out), "--force",
                                       "--gate", "synthetic=allow"])
    assert allowed.exit_code == 0, allowed.output
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] in ("stored-int8", "dynamic-int8", "dynamic-int8-per-tensor", "smooth-int8", "pruned-int8")
    [line] = console_lines(allowed.stdout, f"{report['chosen']} ships on synthetic evidence (--gate synthetic=allow)")
    assert "synthetic inputs" in report["data_source"]


def test_a_pinned_int8_variant_without_real_data_is_refused_before_any_work(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "aws-lambda", "--out", str(tmp_path / "o"),
                                      "--variant", "dynamic-int8"])
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert result.stderr.startswith("error: --variant dynamic-int8 cannot ship without real data")  # before any work
    assert "--gate synthetic=allow" in result.stderr


def test_a_conv_net_with_dynamic_height_and_width_gets_synthetic_images_it_accepts(tmp_path: Path) -> None:
    model = pyramid_cnn(tmp_path / "pyramid.onnx")
    info = inspect_model(model)
    # Five stride-2 convolutions divide by 32: twice that, where 16 (the default) breaks Concat.
    data = synthetic_data(onnx.load(str(model)), info.signature, rows=4)
    assert data.inputs["x"].shape == (4, 3, 64, 64)
    result = optimize(info, with_variants("arm-edge", "static-int8"), tmp_path / "work")
    assert not result.problem and result.gate_rows == 48
    assert "static-int8" in {c.name for c in result.candidates}


def test_sample_shape_sizes_the_synthetic_inputs_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    model = pyramid_cnn(tmp_path / "pyramid.onnx")
    data = synthetic_data(onnx.load(str(model)), inspect_model(model).signature, rows=2,
                          shapes={"x": (1, 3, 96, 128)})
    assert data.inputs["x"].shape == (2, 3, 96, 128) and "--sample-shape x" in data.source
    for shape, message in [
        ("x=1x3x64", "error: --sample-shape x=1x3x64 has 3 axes; input 'x' has 4: [batch, 3, height, width]"),
        ("x=1x4x64x64", "error: --sample-shape x=1x4x64x64: axis 1 of input 'x' is fixed at 3"),
        ("image=1x3x64x64", "error: --sample-shape image: the model has no tensor input 'image' (inputs: x)"),
        ("x=1x3xhigh", "error: --sample-shape 'x=1x3xhigh' is not INPUT=DIMS"),
    ]:
        result = CliRunner().invoke(app, ["optimize", str(model), "-t", "arm-edge", "--out", str(tmp_path / "o"),
                                          "--sample-shape", shape])
        assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def reshape_by_three(path: Path) -> Path:
    """x [batch, length] -> Reshape to [batch, 3, -1] -> y: runs only when length is a multiple of 3,
    which nothing in the graph tells (synthetic rows of length 16 break it)."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="split"),
             helper.make_node("ReduceSum", ["r", "axes"], ["y"], name="sum", keepdims=0)]
    graph = helper.make_graph(nodes, "by3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                              [numpy_helper.from_array(np.array([0, 3, -1], np.int64), "shape"),
                               numpy_helper.from_array(np.array([2], np.int64), "axes")])
    return save_graph(graph, path)


def test_when_no_variant_can_be_compared_the_console_and_manifest_say_why_in_full(tmp_path: Path) -> None:
    model = reshape_by_three(tmp_path / "by3.onnx")
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    [line] = console_lines(result.stdout, "no variant was made: the float model fails on synthetic inputs")
    # The whole reason, onnxruntime's included, without its C++ source locations; then the fix.
    assert "Reshape node. Name:'split'" in line and "onnxruntime_src" not in line
    assert line.endswith("; pass --sample-shape INPUT=DIMS with a shape the model accepts, or --calibration FILE.npz")

    run = optimize(inspect_model(model), with_variants("x86-cpu", "dynamic-int8"), tmp_path / "work")
    assert reason_without_figures(run) == f"float ships; {line}"
    fixed = optimize(inspect_model(model), with_variants("x86-cpu", "dynamic-int8"), tmp_path / "work2",
                     sample_shapes={"x": (1, 18)})
    assert not fixed.problem and fixed.candidates[0].passed and len(fixed.candidates) > 1


@pytest.mark.parametrize("passes", [["prune", "graph"], []])
def test_weights_held_in_constant_nodes_are_quantized(tmp_path: Path, passes: list[str]) -> None:
    model = pyramid_cnn(tmp_path / "pyramid.onnx", constant_weights=True)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((40, 3, 64, 64)).astype(np.float32))
    target = with_variants("arm-edge", "static-int8")
    target = target.model_copy(update={"optimize": target.optimize.model_copy(update={"passes": passes})})
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=tmp_path / "d.npz")
    float_size = result.candidates[0].size_bytes
    static = next(c for c in result.candidates if c.name == "static-int8")
    assert static.passed and static.size_bytes < 0.5 * float_size, static.size_bytes
    # The shipped float file is the model as given: its Constant nodes stay where they were.
    assert sum(n.op_type == "Constant" for n in onnx.load(str(result.candidates[0].path)).graph.node) == 8
