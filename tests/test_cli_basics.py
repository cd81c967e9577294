"""What a new user sees first: help that reads right, --version with what ships, and
errors for a missing extra that name the extra."""

from __future__ import annotations

import sys

import pytest
import typer.main
from typer.testing import CliRunner

from mlpack.build import host_versions
from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.extras import EXTRAS
from mlpack.targets import known_targets


def run(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=120)


def commands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("args", [[], *([name] for name in commands())], ids=lambda a: " ".join(a) or "mlpack")
def test_flags_show_no_value_type_in_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_options_that_take_a_value_still_show_its_type() -> None:
    result = run("build", "--help")
    assert "--max-cold-start" in result.output and "<float>" in result.output


def test_version_prints_the_runtime_versions_each_target_ships() -> None:
    result = run("--version")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("mlpack 0.1.0 (python ")
    for target in known_targets():
        versions = host_versions(target)
        line = next(ln for ln in lines if ln.split()[:1] == [target.name])
        assert f"python {versions.python}" in line
        assert f"{target.runtime.onnxruntime}=={versions.onnxruntime}" in line
        assert f"numpy=={versions.numpy}" in line
        assert (f"bentoml=={versions.bentoml}" in line) == ("bento" in target.builds)


def test_deploy_without_the_aws_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlpack.deploy.template import _require_sam_translator

    monkeypatch.setitem(sys.modules, "samtranslator", None)  # as if not installed
    with pytest.raises(MlpackError) as caught:
        _require_sam_translator()
    assert caught.value.one_line() == (
        "`mlpack deploy` needs aws-sam-translator, which is not installed; pip install 'mlpack[aws]'")


def test_rollout_without_the_edge_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlpack.rollout import ansible

    monkeypatch.setattr(ansible.shutil, "which", lambda *a, **k: None)
    with pytest.raises(MlpackError) as caught:
        ansible.tool("ansible-playbook")
    assert caught.value.one_line().endswith("; pip install 'mlpack[edge]'")


def test_every_extra_named_in_errors_is_one_pyproject_declares() -> None:
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert set(EXTRAS) <= set(declared["project"]["optional-dependencies"])
