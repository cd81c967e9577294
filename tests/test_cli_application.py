"""The global options reach every command through the one Application object."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import InputError


def test_without_debug_a_user_error_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path} is not an mlpack artifact (no manifest.json); "
                             "pass a folder written by `mlpack build`\n")


def test_debug_lets_the_error_through_with_its_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--debug", "verify", str(tmp_path)])
    assert isinstance(result.exception, InputError)
    assert "error:" not in result.stderr
