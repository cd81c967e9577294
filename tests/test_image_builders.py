"""The builder interface: choosing a builder, and the docker SDK path against a fake daemon
(no Docker daemon here; buildah is exercised for real in test_image.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlpack.errors import InputError, MlpackError
from mlpack.image import builder as builders
from mlpack.image.builder import DockerBuilder, PushFailed, select_builder

from .fake_docker import FakeDocker


def test_docker_builder_builds_the_same_context_with_the_same_arguments(tmp_path: Path) -> None:
    docker = FakeDocker([])
    (tmp_path / "container").mkdir()
    logged: list[str] = []
    built = DockerBuilder(docker).build(tmp_path, tmp_path / "container" / "Dockerfile", "m/a:1", "linux/arm64",
                                        {"BASE_IMAGE": "mirror/python:3.11"}, logged.append)
    assert built.id == docker.image.id and built.platform == "linux/arm64"
    assert docker.built["dockerfile"] == "container/Dockerfile" and docker.built["platform"] == "linux/arm64"
    assert docker.built["buildargs"] == {"BASE_IMAGE": "mirror/python:3.11"}
    assert logged == ["  Step 1/2 : FROM base"]


def test_docker_builder_push_returns_the_daemons_digest() -> None:
    digest = "sha256:" + "d" * 64
    docker = FakeDocker([{"status": "1: digest", "aux": {"Tag": "1", "Digest": digest, "Size": 1}}])
    pushed = DockerBuilder(docker).push("m/a:1", "r.example.com/team/a:1", False, lambda _: None)
    assert pushed.digest == digest
    assert docker.image.tags == [("r.example.com/team/a", "1")]


def test_docker_builder_push_errors_are_one_line_and_classified() -> None:
    docker = FakeDocker([{"error": "received unexpected HTTP status: 503 Service Unavailable"}])
    with pytest.raises(PushFailed) as failed:
        DockerBuilder(docker).push("m/a:1", "r.example.com/a:1", False, lambda _: None)
    assert failed.value.transient
    assert failed.value.one_line().startswith("push to r.example.com/a:1 failed: received unexpected HTTP status")


def test_an_unknown_builder_is_an_input_error() -> None:
    with pytest.raises(InputError) as failed:
        select_builder("kaniko")
    assert failed.value.one_line() == "unknown --builder 'kaniko'; use one of: docker, buildah"


def test_without_a_daemon_buildah_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builders, "docker_reachable", lambda: False)
    monkeypatch.setattr(builders.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert select_builder().name == "buildah"


def test_without_any_builder_the_error_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builders, "docker_reachable", lambda: False)
    monkeypatch.setattr(builders.shutil, "which", lambda name: None)
    with pytest.raises(MlpackError) as failed:
        select_builder()
    assert failed.value.one_line().startswith("no image builder found: no Docker daemon answers and buildah is not")
    assert failed.value.one_line().endswith("; start Docker, or install buildah (apt-get install buildah)")


def test_asking_for_docker_without_a_daemon_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(MlpackError) as failed:
        select_builder("docker")
    assert failed.value.one_line().startswith("no Docker daemon answers: ")
    assert failed.value.one_line().endswith("; start Docker, set DOCKER_HOST, or use --builder buildah")


def test_image_of_a_folder_that_is_not_an_artifact_is_one_line(tmp_path: Path) -> None:
    from mlpack.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["image", str(tmp_path), "--builder", "buildah"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path} is not an mlpack artifact (no manifest.json); "
                             "pass a folder written by `mlpack build`\n")


def test_push_before_image_says_what_to_run(tmp_path: Path) -> None:
    import json

    from mlpack.cli import app
    from typer.testing import CliRunner

    from .manifests import make_manifest, write_artifact

    artifact = tmp_path / "digits-x86-cpu"
    artifact.mkdir()
    write_artifact(artifact, make_manifest("x86-cpu", "digits"))
    result = CliRunner().invoke(app, ["push", str(artifact), "--to", "127.0.0.1:5000/digits"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: digits-x86-cpu has no built image; run `mlpack image {artifact.resolve()}` "
                             "first\n")
    assert json.loads((artifact / "manifest.json").read_text())["image"]["digest"] is None
