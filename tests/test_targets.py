"""Targets are data: one validated TOML file each."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.targets import known_targets, load_target, load_target_file

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "x86-cpu": ("linux/amd64", "onnxruntime"),
    "cuda-gpu": ("linux/amd64", "onnxruntime-gpu"),
    "cuda12-gpu": ("linux/amd64", "onnxruntime-gpu"),
    "arm-edge": ("linux/arm64", "onnxruntime"),
    "aws-lambda": ("linux/amd64", "onnxruntime"),
    "aws-lambda-arm64": ("linux/arm64", "onnxruntime"),
}


def test_every_target_loads_with_its_platform_and_runtime() -> None:
    loaded = {t.name: (t.platform.oci, t.runtime.onnxruntime) for t in known_targets()}
    assert loaded == EXPECTED


def test_cuda_target_puts_the_cuda_provider_first() -> None:
    assert load_target("cuda-gpu").runtime.execution_providers[0] == "CUDAExecutionProvider"


def test_targets_command_lists_each_target_on_one_line() -> None:
    result = CliRunner().invoke(app, ["targets"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == sorted(EXPECTED)
    assert all(len(line.split(None, 2)) == 3 for line in lines)  # name, platform, description


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(MlpackError) as info:
        load_target("risc-v")
    assert info.value.one_line() == (
        "unknown target 'risc-v'; choose one of: arm-edge, aws-lambda, aws-lambda-arm64, cuda-gpu, cuda12-gpu, x86-cpu "
        "(see `mlpack targets`)"
    )


def test_a_bad_target_file_reports_every_error_with_its_key(tmp_path: Path) -> None:
    text = (REPO / "targets/x86-cpu.toml").read_text()
    text = text.replace('oci = "linux/amd64"', 'oci = "linux/s390x"')
    text = text.replace('policy = "fastest"', 'policy = "cheapest"')
    text = text.replace('role = "server"', 'role = "server"\nflavour = "vanilla"')
    bad = tmp_path / "x86-cpu.toml"
    bad.write_text(text)
    with pytest.raises(MlpackError) as info:
        load_target_file(bad)
    message = info.value.one_line()
    assert message.startswith(f"invalid target file {bad}: ")
    for key in ("platform.oci", "optimize.policy", "flavour"):
        assert key in message, key
    assert "\n" not in message


def test_target_name_must_match_its_file(tmp_path: Path) -> None:
    text = (REPO / "targets/x86-cpu.toml").read_text()
    other = tmp_path / "x86-other.toml"
    other.write_text(text)
    with pytest.raises(MlpackError, match="must match the file name 'x86-other'"):
        load_target_file(other)
