"""The docker SDK builder for real: the same context built and pushed through a Docker API.

There is no Docker daemon here; `podman system service` serves the same API (the test
starts it on a private socket, with a registries.conf that lets it push to the test
registry over plain HTTP, as docker does for 127.0.0.0/8). It keeps its images in a
private store that starts with only the stand-in base: the Docker API keeps a build's
stages as cached images, as docker does, and a store of its own is gone with the test
without touching what tests on other workers build at the same time in the shared one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from mlpack.cli import app
from typer.testing import CliRunner

from .image_support import buildah, image_config, registry, requires_image_tools, requires_podman
from .manifests import read_json
from .standin import ensure_standin
from .pyramid import heavy

pytestmark = [pytest.mark.slow, requires_image_tools, requires_podman]


@pytest.fixture
@heavy
def docker_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Docker API on a private socket and a private store; yields (registry, base, store)."""
    store = Path(tempfile.mkdtemp(prefix="podman-"))  # short: podman refuses a runroot over 50 characters
    where = ["--root", str(store / "root"), "--runroot", str(store / "run")]
    base = ensure_standin("amd64")
    driver = buildah("info", "--format", "{{.store.GraphDriverName}}").stdout.strip()
    try:
        buildah("push", "--quiet", base, f"containers-storage:[{driver}@{store / 'root'}+{store / 'run'}]{base}")
        with registry(tmp_path / "registry") as host:
            conf = tmp_path / "registries.conf"
            conf.write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
            socket = tmp_path / "docker.sock"
            proc = subprocess.Popen(["podman", *where, "system", "service", "--time=0", f"unix://{socket}"],
                                    env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)},
                                    stdout=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 20
                while not socket.exists():
                    assert proc.poll() is None and time.monotonic() < deadline, "podman system service did not start"
                    time.sleep(0.1)
                monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
                yield host, base, store
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    finally:
        buildah("rmi", "--all", "--force", store=store, check=False)
        shutil.rmtree(store, ignore_errors=True)


def test_the_docker_builder_builds_and_pushes_the_same_context(demo_artifact, docker_api, tmp_path: Path) -> None:
    host, base, store = docker_api
    artifact = shutil.copytree(demo_artifact("x86-cpu").path, tmp_path / "digits-demo-x86-cpu")
    built = CliRunner().invoke(app, ["image", str(artifact), "--builder", "docker", "--base-image", base, "-q"])
    assert built.exit_code == 0, built.output
    image = read_json(artifact)["image"]
    assert "sha256:" + image_config(image["local"], store)["FromImageID"] == image["id"]
    assert image_config(image["local"], store)["Docker"]["config"]["User"] == "10001:10001"

    dest = f"{host}/demo/viadocker:1"
    pushed = CliRunner().invoke(app, ["push", str(artifact), "--to", dest, "--builder", "docker", "-q"])
    assert pushed.exit_code == 0, pushed.output
    recorded = read_json(artifact)["image"]
    answer = requests.get(f"http://{host}/v2/demo/viadocker/manifests/1",
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert answer.headers["Docker-Content-Digest"] == recorded["digest"]
    assert answer.json()["config"]["digest"] == image["id"]
    assert recorded["ref"] == f"{host}/demo/viadocker@{recorded['digest']}"
    assert buildah("inspect", "--type", "image", image["id"], check=False).returncode != 0, \
        "the build stayed out of the shared store"

