"""The artifact folder is the contract between commands: one `Artifact` type opens it
(the manifest parsed and validated against its versioned schema), checks it, and is the
only way a command changes manifest.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpack.artifact import Artifact
from mlpack.errors import InputError
from mlpack.manifest import SCHEMA_VERSION, Manifest
from mlpack.targets import load_target

from .manifests import edit_json, make_manifest, read_json, write_artifact


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    root = tmp_path / "model-x86-cpu"
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.onnx").write_bytes(b"weights")
    write_artifact(root, make_manifest("x86-cpu"))
    return root


def test_the_manifest_carries_its_schema_version_and_the_whole_resolved_target(artifact: Path) -> None:
    raw = read_json(artifact)
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["target"] == load_target("x86-cpu").model_dump(mode="json")
    assert set(raw["files"]) == {"model/model.onnx"}


def test_an_artifact_opens_into_typed_sections(artifact: Path) -> None:
    manifest = Artifact.open(artifact).manifest
    assert isinstance(manifest, Manifest)
    assert manifest.artifact == "model-x86-cpu" and manifest.platform == "linux/amd64"
    assert manifest.target.serving.port == 3000 and manifest.bento is None and manifest.lambda_ is None


def test_a_manifest_without_schema_version_is_refused_with_what_to_do(artifact: Path) -> None:
    edit_json(artifact, lambda m: m.pop("schema_version"))
    with pytest.raises(InputError) as error:
        Artifact.open(artifact)
    assert error.value.one_line() == (
        f"model-x86-cpu/manifest.json has no schema_version: it was written by an mlpack older than this "
        f"one's schema {SCHEMA_VERSION}; rebuild the artifact with `mlpack build`")


def test_a_manifest_from_a_newer_mlpack_asks_for_an_upgrade(artifact: Path) -> None:
    edit_json(artifact, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(InputError) as error:
        Artifact.open(artifact)
    assert error.value.one_line().endswith(
        f"has schema_version {SCHEMA_VERSION + 1}; this mlpack reads schema {SCHEMA_VERSION}; "
        "upgrade mlpack (pip install -U mlpack)")


def test_an_invalid_value_is_named_by_its_key(artifact: Path) -> None:
    edit_json(artifact, lambda m: m["image"].update(digest="sha256:nothex"))
    with pytest.raises(InputError, match=r"invalid image.digest: String should match pattern"):
        Artifact.open(artifact)


def test_a_manifest_that_is_not_json_is_one_line(artifact: Path) -> None:
    (artifact / "manifest.json").write_text("{ not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        Artifact.open(artifact)


def test_require_intact_names_what_changed(artifact: Path) -> None:
    (artifact / "model" / "model.onnx").write_bytes(b"tampered")
    (artifact / "extra.txt").write_text("added\n")
    with pytest.raises(InputError) as error:
        Artifact.open(artifact).require_intact("deployed")
    assert error.value.one_line() == (
        "model-x86-cpu does not match its manifest.json (not in manifest: extra.txt, changed: model/model.onnx); "
        "a changed artifact is never deployed; rebuild it with `mlpack build`")


def test_update_validates_the_change_and_rewrites_atomically(artifact: Path) -> None:
    opened = Artifact.open(artifact)
    opened.update(lambda m: setattr(m, "memory_mb", 1024))
    assert read_json(artifact)["memory_mb"] == 1024
    assert sorted(p.name for p in artifact.iterdir()) == ["manifest.json", "model"], "no temporary files remain"


def test_a_failing_update_leaves_the_manifest_as_it_was(artifact: Path) -> None:
    before = (artifact / "manifest.json").read_bytes()

    def change(m: Manifest) -> None:
        m.memory_mb = 2048
        raise RuntimeError("the command failed half-way")

    with pytest.raises(RuntimeError):
        Artifact.open(artifact).update(change)
    assert (artifact / "manifest.json").read_bytes() == before


def test_an_update_that_breaks_the_schema_is_refused(artifact: Path) -> None:
    before = (artifact / "manifest.json").read_bytes()
    with pytest.raises(ValueError):
        Artifact.open(artifact).update(lambda m: setattr(m, "memory_mb", -1))
    assert (artifact / "manifest.json").read_bytes() == before


def test_an_update_starts_from_the_manifest_on_disk(artifact: Path) -> None:
    """Two commands on one artifact: the second one's change keeps the first one's."""
    first, second = Artifact.open(artifact), Artifact.open(artifact)
    first.update(lambda m: setattr(m, "memory_mb", 1024))
    second.update(lambda m: setattr(m.image, "digest", "sha256:" + "1" * 64))
    raw = read_json(artifact)
    assert raw["memory_mb"] == 1024 and raw["image"]["digest"] == "sha256:" + "1" * 64


def test_the_target_snapshot_is_read_even_if_this_installation_lacks_its_templates(artifact: Path) -> None:
    """An artifact from another mlpack names template groups this one may not have: it
    still opens (and verifies); only rendering would need them."""
    edit_json(artifact, lambda m: m["target"]["render"].append({"templates": "iac/not-installed", "into": "iac/x",
                                                                "app": False}))
    assert Artifact.open(artifact).manifest.target.render[-1].templates == "iac/not-installed"


def test_the_manifest_file_is_json_with_the_lambda_section_under_its_own_name(tmp_path: Path) -> None:
    from mlpack.manifest import ColdStart, LambdaSection

    root = tmp_path / "fn"
    root.mkdir()
    cold = ColdStart(seconds=0.2, peak_rss_mb=60.0, runs=3, python="python3.12", note="measured")
    write_artifact(root, make_manifest("aws-lambda", lambda_=LambdaSection(cold_start=cold)))
    raw = json.loads((root / "manifest.json").read_text())
    assert raw["lambda"]["zip"] == "lambda/function.zip" and "lambda_" not in raw
    assert Artifact.open(root).manifest.lambda_.cold_start.seconds == 0.2
