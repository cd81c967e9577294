"""Bad input: one clear line on stderr, a non-zero exit, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from mlpack.cli import app

from .models import linear_model


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def assert_one_line_error(result, expected: str) -> None:
    assert result.exit_code != 0
    assert result.stderr == f"error: {expected}\n"
    assert result.stdout == ""


def test_a_file_that_is_not_onnx(tmp_path: Path, out: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_text("this is a text file, not a model")
    result = run("build", str(model), "-t", "x86-cpu", "-o", str(out))
    assert_one_line_error(
        result,
        f"{model} is not an ONNX model, or is truncated (protobuf parsing failed); "
        "export the model to ONNX first, e.g. with torch.onnx.export or skl2onnx",
    )
    assert result.exit_code == 2
    assert leftovers(out) == []


def test_a_truncated_model(tmp_path: Path, out: Path) -> None:
    whole = linear_model(tmp_path / "whole.onnx", features=64, outputs=64)
    model = tmp_path / "truncated.onnx"
    model.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = run("build", str(model), "-t", "x86-cpu", "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {model} ")
    assert result.stderr.count("\n") == 1
    assert leftovers(out) == []


def test_an_empty_model_file(tmp_path: Path, out: Path) -> None:
    model = tmp_path / "empty.onnx"
    model.touch()
    result = run("build", str(model), "-t", "x86-cpu", "-o", str(out))
    assert_one_line_error(result, f"model file {model} is empty; pass the path of a valid .onnx model file")


def test_a_missing_model_file(tmp_path: Path, out: Path) -> None:
    model = tmp_path / "nowhere.onnx"
    result = run("build", str(model), "-t", "x86-cpu", "-o", str(out))
    assert_one_line_error(result, f"model file {model} does not exist; pass the path of a valid .onnx model file")


def test_a_model_whose_external_data_is_missing(tmp_path: Path, out: Path) -> None:
    model_path = linear_model(tmp_path / "src.onnx")
    model = onnx.load(str(model_path))
    moved = tmp_path / "ext" / "big.onnx"
    moved.parent.mkdir()
    onnx.save(model, str(moved), save_as_external_data=True, all_tensors_to_one_file=True,
              location="big.onnx.data", size_threshold=0)
    (moved.parent / "big.onnx.data").unlink()
    result = run("build", str(moved), "-t", "x86-cpu", "-o", str(out))
    assert_one_line_error(
        result,
        f"model big.onnx keeps its weights in big.onnx.data, which is missing; "
        f"put the external data file next to the model in {moved.parent}",
    )


def test_an_unknown_target_lists_the_known_ones(linear_onnx: Path, out: Path) -> None:
    result = run("build", str(linear_onnx), "-t", "tpu", "-o", str(out))
    assert_one_line_error(
        result,
        "unknown target 'tpu'; choose one of: arm-edge, aws-lambda, aws-lambda-arm64, cuda-gpu, cuda12-gpu, x86-cpu "
        "(see `mlpack targets`)",
    )
    assert leftovers(out) == []


def test_an_existing_output_folder_is_kept_without_force(linear_onnx: Path, out: Path) -> None:
    existing = out / "linear-x86-cpu"
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("mine")
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out))
    assert_one_line_error(
        result, f"{existing} already exists; pass --force to replace it, or choose another --out or --name"
    )
    assert (existing / "keep.txt").read_text() == "mine"
    assert leftovers(out) == ["linear-x86-cpu"]


def test_an_output_folder_that_cannot_be_created(linear_onnx: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(blocker / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot create output folder {blocker / 'out'}: ")
    assert result.stderr.endswith("; choose a writable folder with --out\n")


def test_an_invalid_name_is_refused_before_anything_is_written(linear_onnx: Path, out: Path) -> None:
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out), "--name", 'bad"name$x')
    assert_one_line_error(
        result,
        "invalid --name 'bad\"name$x': use 1 to 40 lowercase letters, digits and '-', starting and "
        "ending with a letter or digit; pass a plain name, e.g. --name my-model",
    )
    assert leftovers(out) == []


def test_a_failing_build_step_leaves_nothing_behind(linear_onnx: Path, out: Path, monkeypatch) -> None:
    import mlpack.steps.bento
    from mlpack.errors import MlpackError

    def broken(*args, **kwargs):
        raise MlpackError("bentoml build failed: simulated")

    monkeypatch.setattr(mlpack.steps.bento, "build_bento", broken)
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "error: bentoml build failed: simulated"
    assert leftovers(out) == []  # the partial folder was removed


def test_a_gate_override_with_an_unknown_key_names_the_known_ones(linear_onnx: Path, out: Path) -> None:
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out), "--gate", "min_cosin=0.9")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --gate min_cosin: Extra inputs are not permitted; gate keys are ")
    assert "min_cosine_mean" in result.stderr
    assert leftovers(out) == []


def test_a_gate_override_out_of_range_is_refused(linear_onnx: Path, out: Path) -> None:
    result = run("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out), "--gate", "min_cosine_mean=2")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --gate min_cosine_mean: Input should be less than or equal to 1;")
    assert leftovers(out) == []
