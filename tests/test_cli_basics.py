"""What a new user sees first: help that reads right, --version with what ships, and
errors for a missing extra that name the extra."""

from __future__ import annotations

import re
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


# ---- help as written, and options every command shares -----------------------------------

def help_texts(args: list[str]) -> list[str]:
    """The help a command declares (its docstring and every parameter's help), as written."""
    root = typer.main.get_command(app)
    command = root.commands[args[0]] if args else root
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    return [text.replace("\\<", "<") for text in texts]  # as written: without the escapes help adds


def rendered(args: list[str]) -> str:
    """`--help` as a terminal shows it, box drawing and line breaks gone."""
    result = run(*args, "--help")
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


@pytest.mark.parametrize("args", [[], *([name] for name in commands())], ids=lambda a: " ".join(a) or "mlpack")
def test_help_keeps_every_placeholder_it_is_written_with(args: list[str]) -> None:
    placeholders = {found for text in help_texts(args) for found in re.findall(r"\S*<[^<>\s]+>\S*", text)}
    shown = rendered(args)
    lost = sorted(p for p in placeholders if p.strip("`.,;:()") not in shown)
    assert lost == [], f"--help drops the <...> of {lost}"


def test_deploy_help_shows_its_default_names_whole() -> None:
    shown = rendered(["deploy"])
    assert "(default: mlpack-<artifact>)" in shown
    assert "(default: mlpack-deploy-<account>-<region>, created if missing)" in shown


@pytest.mark.parametrize("name", commands())
def test_quiet_is_accepted_after_every_command(name: str) -> None:
    for flag in ("-q", "--quiet"):  # before --help, so that an unknown option fails the parse first
        result = run(name, flag, "--help")
        assert result.exit_code == 0, result.output
    assert "--quiet" in rendered([name])


def test_targets_variants_lists_exactly_what_variant_accepts() -> None:
    from mlpack.optimize.pipeline import check_variant
    from mlpack.optimize.variants.registry import REGISTRY, summary

    result = run("targets", "--variants")
    assert result.exit_code == 0, result.output
    listed: dict[str, list[str]] = {}
    for line in result.output.splitlines():
        if line.startswith("  "):
            name, text = line.split(maxsplit=1)
            listed[target].append(name)
            assert text == summary(name) and text
        else:
            target = line.split()[0]
            listed[target] = []
    for spec in known_targets():
        assert listed[spec.name] == ["float", *spec.optimize.variants]
        for name in listed[spec.name]:
            check_variant(spec, name)  # each one listed is accepted
    for name in REGISTRY:  # every variant says what it makes, in its module docstring's first line
        assert summary(name) and not summary(name).startswith(name)
    assert "mlpack targets --variants" in rendered(["build"]) and "mlpack targets --variants" in rendered(["optimize"])
    assert run("targets").output.count("\n") == len(known_targets())  # plain `targets` stays one line each
