"""`mlpack build`: the artifact folder each target gets, and its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.manifest import SCHEMA_VERSION
from mlpack.model.info import sha256_file
from mlpack.targets import load_target

pytestmark = pytest.mark.slow

TARGETS = ["x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda"]


@pytest.mark.parametrize("target", TARGETS)
def test_demo_artifact_manifest_matches_its_files(demo_artifact, target: str) -> None:
    result = demo_artifact(target)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert result.path.name == f"digits-demo-{target}"
    assert manifest["schema_version"] == SCHEMA_VERSION
    # The resolved target, whole: the artifact keeps its meaning when targets/ changes.
    assert manifest["target"] == load_target(target).model_dump(mode="json")
    assert Artifact.open(result.path).problems() == []
    assert manifest["model"]["sha256"] == sha256_file(result.path / "model" / "model.onnx")
    assert manifest["model"]["signature"]["inputs"] == [
        {"name": "pixels", "dtype": "float32", "shape": [None, 64]}
    ]
    assert set(manifest["versions"]) >= {"onnxruntime", "numpy", "bentoml", "python"}
    assert manifest["requirements"]["runtime"][1] == f"numpy=={manifest['versions']['numpy']}"
    assert (result.path / "container" / "Dockerfile").is_file()
    assert (result.path / "report.md").is_file() and (result.path / "report.json").is_file()


@pytest.mark.parametrize("target", TARGETS)
def test_the_artifact_holds_exactly_what_the_plan_said(demo_artifact, target: str) -> None:
    """plan_build is pure and runs before anything else; the built folder must match it."""
    result = demo_artifact(target)
    actual = {p.relative_to(result.path).as_posix() for p in result.path.rglob("*") if p.is_file()}
    unplanned = sorted(p for p in actual if not result.plan.expected(p))
    assert unplanned == [], "files the plan did not announce"
    assert set(result.plan.files) <= actual, "files the plan announced but the build did not write"
    for step in result.plan.steps:
        for written in step.writes:
            assert any(p == written or p.startswith(written) for p in actual), (step.name, written)


@pytest.mark.parametrize("target", ["x86-cpu", "cuda-gpu", "arm-edge"])
def test_server_and_edge_targets_get_a_bento(demo_artifact, target: str) -> None:
    result = demo_artifact(target)
    assert (result.path / "bento" / "bento.yaml").is_file()
    assert (result.path / "bento" / "src" / "model.onnx").read_bytes() == (
        result.path / "model" / "model.onnx"
    ).read_bytes()
    requirements = (result.path / "container" / "requirements.txt").read_text()
    runtime = "onnxruntime-gpu" if target == "cuda-gpu" else "onnxruntime"
    assert f"\n{runtime}==" in "\n" + requirements


def readme_tree() -> dict[str, str]:
    """README.md's artifact tree: each entry (a folder with its `/`) and the rest of its line."""
    import re

    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The artifact\n"):]
    block = re.search(r"```text\n<name>-<target>/\n(.*?)```", section, re.S).group(1)
    return {line.split()[0]: line.strip() for line in block.splitlines() if line.strip()}


# Folders whose contents are a tool's own layout (BentoML's bento, the IaC kinds per target):
# the tree names the folder, docs/architecture.md and docs/deploy.md what is inside.
GENERATED_TREES = {"bento/", "iac/"}


def test_the_readme_tree_names_every_file_of_every_targets_artifact(demo_artifact) -> None:
    from mlpack.manifest import HISTORY, IMAGE_SBOM, SIGNATURE
    from mlpack.processing.schema import PROCESSING_DIR

    def names(text: str) -> set[str]:
        return set(text.replace(",", " ").replace("(", " ").replace(")", " ").split())

    tree = readme_tree()
    words = names(" ".join(tree.values()))
    # Written after the build (`mlpack image`, `mlpack sign`, deploy and rollout) or only with processing options.
    later = {IMAGE_SBOM, SIGNATURE, HISTORY, f"{PROCESSING_DIR}/"}
    seen = set(later)
    for target in TARGETS:
        root = demo_artifact(target).path
        for entry in sorted(root.iterdir()):
            name = entry.name + ("/" if entry.is_dir() else "")
            seen.add(name)
            assert name in words, f"README's artifact tree does not name {target}'s {name}"
            if entry.is_dir() and name not in GENERATED_TREES:
                for child in entry.iterdir():
                    child_name = child.name + ("/" if child.is_dir() else "")
                    assert child_name in names(tree[name]), (
                        f"README's artifact tree does not name {target}'s {name}{child_name} on the {name} line")
    assert later <= words
    assert set(tree) <= seen, f"the tree names what no artifact holds: {sorted(set(tree) - seen)}"


def test_dockerfiles_use_the_targets_platform_and_a_non_root_user(demo_artifact) -> None:
    for target, platform in (("x86-cpu", "linux/amd64"), ("arm-edge", "linux/arm64")):
        dockerfile = (demo_artifact(target).path / "container" / "Dockerfile").read_text()
        assert f"FROM --platform={platform} " in dockerfile
        assert "USER 10001:10001" in dockerfile
        assert "HEALTHCHECK" in dockerfile
        assert "build-essential" not in dockerfile and "gcc" not in dockerfile


def test_force_replaces_an_existing_artifact_and_leaves_no_temporary_folders(linear_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out), "-q"])
    assert first.exit_code == 0, first.output
    (out / "linear-x86-cpu" / "stale.txt").write_text("old")
    second = runner.invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-o", str(out), "-q", "--force"])
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in out.iterdir()) == ["linear-x86-cpu"]
    assert not (out / "linear-x86-cpu" / "stale.txt").exists()


def test_the_build_report_says_what_was_built_and_where(linear_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-q", "--name", "lin"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Built lin-x86-cpu (x86-cpu, linux/amd64) in lin-x86-cpu"
    assert lines[1].lstrip().startswith("model ")
    assert any(line.lstrip().startswith("bento      lin-x86-cpu:") for line in lines)
    assert lines[-1].lstrip().startswith("report     lin-x86-cpu/report.html")
    assert result.stderr == ""  # --quiet


def test_verify_names_a_file_that_changed_after_the_build(linear_onnx: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-o", str(tmp_path), "-q"]).exit_code == 0
    artifact = tmp_path / "linear-x86-cpu"
    (artifact / "container" / "Dockerfile").write_text("FROM scratch\n")
    result = runner.invoke(app, ["verify", str(artifact)])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: linear-x86-cpu does not match manifest.json: changed: container/Dockerfile; "
        "rebuild the artifact; never edit it by hand\n"
    )


def test_gate_overrides_reach_the_optimizer_and_its_report(linear_onnx: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-o", str(tmp_path), "-q",
                                      "--gate", "max_relative_error=0", "--gate", "task=regression"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "linear-x86-cpu" / "report.json").read_text())
    assert report["gate"]["max_relative_error"] == 0 and report["gate"]["task"] == "regression"
    # No quantized variant reproduces float exactly: a zero-error gate ships float.
    assert report["chosen"] in ("float", "float-optimized")
