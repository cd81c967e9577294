"""The global options reach every command through the one Application object."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import InputError

from .models import linear_model


def test_without_debug_a_user_error_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path} is not an mlpack artifact (no manifest.json); "
                             "pass a folder written by `mlpack build`\n")


def test_debug_lets_the_error_through_with_its_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--debug", "verify", str(tmp_path)])
    assert isinstance(result.exception, InputError)
    assert "error:" not in result.stderr


def test_global_quiet_silences_the_progress_of_commands_without_their_own_flag(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    args = ["optimize", str(model), "--target", "aws-lambda", "--out", str(tmp_path / "out")]
    loud = CliRunner().invoke(app, args)
    assert loud.exit_code == 0, loud.stderr
    assert "  float: 192 bytes, gate pass" in loud.stderr  # progress goes to stderr by default
    quiet = CliRunner().invoke(app, ["--quiet", *args, "--force"])
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stderr == ""
    assert "wrote " in quiet.stdout  # the result still prints


def test_quiet_after_the_command_silences_it_as_before_it(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    args = ["optimize", str(model), "--target", "aws-lambda", "--out", str(tmp_path / "out"), "--force"]
    for quiet in (["-q"], ["--quiet"]):
        result = CliRunner().invoke(app, [*args, *quiet])
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and "wrote " in result.stdout
