"""`mlpack iac ARTIFACT` renders iac/ again from manifest.json: after `mlpack push`
recorded a digest, every deployment pins the image by digest, the manifest's file list
matches the new files, and the rest of the artifact is untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app

from .iac_support import cfn_lint_errors, checkov, iac_tools, requires_iac_venv
from .manifests import edit_json, read
from .signing_support import make_keys

DIGEST = "sha256:" + "4f" * 32
runner = CliRunner()


def pushed_copy(demo_artifact, target: str, tmp_path: Path) -> Path:
    """A copy of the demo artifact whose manifest says it was pushed to ECR."""
    root = tmp_path / demo_artifact(target).path.name
    shutil.copytree(demo_artifact(target).path, root)
    repository = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{root.name}"
    edit_json(root, lambda m: m["image"].update({"repository": repository, "digest": DIGEST}))
    return root


def mlpack_iac(root: Path):
    return runner.invoke(app, ["iac", str(root)])


@pytest.mark.parametrize("target", ["x86-cpu", "arm-edge"])
def test_iac_pins_every_workload_by_digest_after_push(demo_artifact, target: str, tmp_path: Path) -> None:
    root = pushed_copy(demo_artifact, target, tmp_path)
    before = read(root).files
    (root / "iac" / "stale.yaml").write_text("left over\n")
    result = mlpack_iac(root)
    assert result.exit_code == 0, result.output
    assert f"@{DIGEST}" in result.output
    manifest = read(root)
    assert Artifact.open(root).problems() == []
    assert not (root / "iac" / "stale.yaml").exists()
    # Only iac/ changed.
    assert {p: e for p, e in manifest.files.items() if not p.startswith("iac/")} == \
           {p: e for p, e in before.items() if not p.startswith("iac/")}
    pinned = f"{manifest.image.repository}@{DIGEST}"
    images = []
    for path in (root / "iac").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "DaemonSet"):
                assert "checkov.io/skip1" not in doc["metadata"].get("annotations", {}), "the digest skip must go"
                images += [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
            if doc and "Manifests" in doc:
                images += [a["URI"].removeprefix("docker:") for m in doc["Manifests"] for a in m["Artifacts"]]
    assert images and set(images) == {pinned}


def test_iac_deploys_the_lambda_image_by_digest_after_push(demo_artifact, tmp_path: Path) -> None:
    root = pushed_copy(demo_artifact, "aws-lambda", tmp_path)
    keys = make_keys(tmp_path / "keys")
    assert runner.invoke(app, ["sign", str(root), "--key", str(keys.private)]).exit_code == 0
    result = mlpack_iac(root)
    assert result.exit_code == 0
    # iac/ and manifest.json are signed files: the signature went, and the output says to sign again.
    assert not (root / "signature.sig").exists()
    assert "signature.sig no longer covered it and was removed: sign it again" in " ".join(result.output.split())
    assert runner.invoke(app, ["sign", str(root), "--key", str(keys.private)]).exit_code == 0
    assert runner.invoke(app, ["verify", str(root), "--key", str(keys.public)]).exit_code == 0
    pinned = f"{read(root).image.repository}@{DIGEST}"
    sam = (root / "iac" / "sam" / "template.yaml").read_text()
    assert "PackageType: Image" in sam and f"ImageUri: {json.dumps(pinned)}" in sam and "CodeUri" not in sam
    variables = (root / "iac" / "terraform-lambda" / "variables.tf").read_text()
    assert f"default     = {json.dumps(pinned)}" in variables


@requires_iac_venv
def test_digest_pinned_iac_stays_clean_under_checkov_and_cfn_lint(demo_artifact, tmp_path: Path) -> None:
    for target in ("x86-cpu", "aws-lambda"):
        root = pushed_copy(demo_artifact, target, tmp_path)
        assert mlpack_iac(root).exit_code == 0
        reports = checkov(root / "iac")
        assert [c["check_id"] for r in reports for c in r["results"]["failed_checks"]] == [], target
        skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
        assert "CKV_K8S_43" not in skipped, "pinned by digest: nothing to skip"
    template = tmp_path / "digits-demo-aws-lambda" / "iac" / "sam" / "template.yaml"
    assert cfn_lint_errors(template) == []
    plain = tmp_path / "cloudformation.json"
    iac_tools("sam-translate", template, plain)
    assert cfn_lint_errors(plain) == []


def test_iac_on_a_folder_that_is_not_an_artifact_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["iac", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "not an mlpack artifact" in result.output


def test_iac_rejects_a_tampered_name_without_writing(demo_artifact, tmp_path: Path) -> None:
    root = pushed_copy(demo_artifact, "x86-cpu", tmp_path)
    edit_json(root, lambda m: m.update({"name": 'x"; rm -rf /'}))
    before = sorted(p.relative_to(root) for p in (root / "iac").rglob("*"))
    result = mlpack_iac(root)
    assert result.exit_code == 2 and "not 1 to 40 lowercase" in result.output
    assert sorted(p.relative_to(root) for p in (root / "iac").rglob("*")) == before


def test_iac_renders_the_target_the_artifact_was_built_for_after_targets_change(
    demo_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpack import targets
    from mlpack.resources import data_dir

    root = tmp_path / "artifact"
    shutil.copytree(demo_artifact("x86-cpu").path, root)
    # The installed target file changes after the build: the service moves to port 8080.
    installed = tmp_path / "targets"
    shutil.copytree(data_dir("targets"), installed)
    toml = installed / "x86-cpu.toml"
    toml.write_text(toml.read_text().replace("port = 3000", "port = 8080"))
    monkeypatch.setattr(targets, "data_dir", lambda name: installed if name == "targets" else data_dir(name))
    assert targets.load_target("x86-cpu").serving.port == 8080

    assert mlpack_iac(root).exit_code == 0
    deployment = yaml.safe_load((root / "iac" / "kubernetes" / "base" / "deployment.yaml").read_text())
    model = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "model")
    assert model["ports"][0]["containerPort"] == 3000, "the artifact's own target, not the installed file"
    assert read(root).target.serving.port == 3000
    assert runner.invoke(app, ["verify", str(root)]).exit_code == 0
