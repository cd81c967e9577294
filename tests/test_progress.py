"""Progress that fits where it goes: live spinners and bars on a terminal, the same plain
lines as ever in CI logs and pipes, and `--json` summaries alone on stdout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.progress import Progress, live_terminal

from .optimize_models import two_layer_data, two_layer_model


def test_off_a_terminal_progress_is_the_plain_lines_it_always_was(capsys: pytest.CaptureFixture) -> None:
    progress = Progress(live=False)
    with progress.step("Optimizing for x86-cpu"):
        progress.info("  float: 1,000 bytes, gate pass")
        with progress.bar("timing at batch 1", total=3) as bar:
            bar.advance()
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[:2] == ["• Optimizing for x86-cpu ...", "  float: 1,000 bytes, gate pass"]
    assert lines[2].startswith("  done in ") and lines[2].endswith("s") and len(lines) == 3
    assert captured.out == ""


def test_on_a_terminal_steps_and_bars_are_drawn_live_and_end_in_one_line(capsys: pytest.CaptureFixture) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    progress = Progress(live=True, console=console)
    with progress.step("Building the Bento"):
        progress.info("  fetched 12 wheels")
        with progress.bar("timing at batch 32", total=4) as bar:
            for _ in range(4):
                bar.advance()
    drawn = screen.getvalue()
    assert "Building the Bento" in drawn and "timing at batch 32" in drawn
    assert "fetched 12 wheels" in drawn
    assert "• Building the Bento ... done in " in drawn  # what stays on screen once the step ends
    assert "\x1b[?25l" in drawn  # the live display (it hides the cursor while drawing)
    assert capsys.readouterr().out == ""  # stdout is left to the command's result


def test_quiet_draws_nothing(capsys: pytest.CaptureFixture) -> None:
    progress = Progress(quiet=True, live=True)
    with progress.step("x"), progress.bar("y", total=1) as bar:
        progress.info("z")
        bar.advance()
    assert capsys.readouterr() == ("", "")


def test_live_output_needs_a_terminal_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPACK_PROGRESS", raising=False)
    assert live_terminal(io.StringIO()) is False

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    assert live_terminal(Tty()) is True
    monkeypatch.setenv("TERM", "dumb")
    assert live_terminal(Tty()) is False
    monkeypatch.setenv("MLPACK_PROGRESS", "plain")
    monkeypatch.setenv("TERM", "xterm")
    assert live_terminal(Tty()) is False
    monkeypatch.setenv("MLPACK_PROGRESS", "live")
    assert live_terminal(io.StringIO()) is True


def test_optimize_json_is_one_summary_on_stdout(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    data = two_layer_data(tmp_path / "d.npz")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(model), "-t", "x86-cpu", "--calibration", str(data),
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # nothing else on stdout
    assert summary["model"] == str(out / "model.onnx") and Path(summary["report"]["html"]).is_file()
    assert summary["chosen"] in {c["name"] for c in summary["candidates"]}
    assert "timing" in result.stderr  # progress still goes to stderr


@pytest.mark.slow
def test_build_json_is_one_summary_on_stdout(linear_onnx: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(linear_onnx), "-t", "aws-lambda", "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "linear-aws-lambda" / "manifest.json").read_text())
    assert summary["artifact"] == str(tmp_path / "linear-aws-lambda")
    assert summary["model"]["sha256"] == manifest["model"]["sha256"]
    assert summary["lambda"]["zip_bytes"] == manifest["files"]["lambda/function.zip"]["size"]
    assert summary["files"] == len(manifest["files"])
    report = json.loads((tmp_path / "linear-aws-lambda" / "report.json").read_text())
    assert summary["steps"] == report["build_steps"] and "lambda-zip" in [s["name"] for s in summary["steps"]]
    assert "• Optimizing for aws-lambda" in result.stderr


def test_a_json_command_that_fails_writes_nothing_on_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(tmp_path / "missing.onnx"), "-t", "x86-cpu", "--json"])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_every_long_command_offers_json() -> None:
    for command in ("build", "optimize", "push", "deploy"):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert "--json" in result.output, command


def test_a_deploy_counts_its_resources_as_they_settle() -> None:
    from mlpack.deploy.lambda_deploy import _counting_settled

    lines, settled = [], []
    log = _counting_settled(lines.append, lambda: settled.append(1))
    log("    0.4s  CREATE_IN_PROGRESS           Function (AWS::Lambda::Function)")
    log("    2.1s  CREATE_COMPLETE              Function (AWS::Lambda::Function)")
    log("    2.3s  UPDATE_COMPLETE_CLEANUP_IN_PROGRESS mlpack-x (AWS::CloudFormation::Stack)")
    log("    2.9s  UPDATE_COMPLETE              mlpack-x (AWS::CloudFormation::Stack)")
    assert len(lines) == 4 and len(settled) == 2  # every line is still logged


def test_an_image_build_moves_its_bar_one_instruction_per_builder_step(tmp_path: Path) -> None:
    from mlpack.image.build import counting_steps, instructions
    from mlpack.progress import Bar

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# syntax note\nARG BASE_IMAGE=debian\nFROM ${BASE_IMAGE}\nRUN apt-get update \\\n"
                          "    && apt-get install -y python3\nCOPY app /app\nUSER 65532\n")
    assert instructions(dockerfile) == ["ARG", "FROM", "RUN", "COPY", "USER"]
    lines: list[str] = []
    bar = Bar()
    log = counting_steps(bar, lines.append)
    for line in ("  STEP 1/4: FROM debian", "  Getting image source signatures", "  [2/2] STEP 2/4: RUN apt-get",
                 "  Step 3/4 : COPY app /app", "  the next step 4/4 is coming"):
        log(line)
    assert bar.completed == 3 and len(lines) == 5  # every line is still logged
