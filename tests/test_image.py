"""Images for x86-cpu and arm-edge, built with buildah on an offline stand-in base,
pushed to a real registry, pulled back by digest and run: a correct prediction from inside.
The x86-cpu base is made by docs/images.md's offline recipe, its lines run as typed (the
tag aside: a private one, on this shared image store), with a stand-in for debootstrap that
unpacks the cached stand-in root file system instead of downloading packages.

Slow (a few minutes): two image builds, two pushes, an arm64 run under qemu. The stand-in
bases are cached in ~/.cache/mlpack-test (or $MLPACK_TEST_CACHE) between runs.
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import re
import shutil
import subprocess
import uuid
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
import pytest
import requests
from mlpack.cli import app
from mlpack.model.demo import DEMO_NAME
from typer.testing import CliRunner

from .demo_data import held_out_demo_rows
from .manifests import read_json
from .image_support import (
    Flaky503Proxy,
    buildah,
    free_port,
    image_config,
    own_image_name,
    registry,
    requires_arm64_emulation,
    requires_image_tools,
    run_python,
    serving,
    wait_for,
)
from .standin import PACKAGES, SUITE, ensure_standin, rootfs_tarball
from .pyramid import heavy, local
from .quick_checks import quick_check

pytestmark = [pytest.mark.slow, requires_image_tools, requires_arm64_emulation]

TARGETS = {"x86-cpu": "amd64", "arm-edge": "arm64"}
ROWS = 16  # held-out validation rows sent through the model inside each image

# Runs inside the image: the serving stack and the agent import, and the artifact's own
# runtime (what the Bento service calls) answers for the rows given as JSON.
PREDICT = """
import importlib.util, json, os, sys
from pathlib import Path
import bentoml, mlpack_agent.agent
src = Path("/opt/mlpack/bento/src")
sys.path.insert(0, str(src))
from mlpack_runtime import load_runtime
runtime = load_runtime(src / "runtime.json")
session = runtime.open_session(src)
arrays = runtime.parse_inputs({"pixels": json.loads(sys.argv[1])})
# Every module imported from source had its bytecode in the image (the root is read-only where it runs).
uncompiled = sorted(name for name, module in list(sys.modules.items())
                    if (getattr(module, "__file__", None) or "").endswith(".py")
                    and not os.path.exists(importlib.util.cache_from_source(module.__file__)))
print(json.dumps({**runtime.outputs_to_json(session.run(None, arrays)), "uncompiled": uncompiled}))
"""


def missing_bytecode(folder: Path, run_at: str) -> list[str]:
    """The .py files under `folder` without the bytecode the image's Python 3.11 reads: an
    unchecked-hash .pyc (no source check at import) naming the file where the image has it."""
    missing = []
    for source in sorted(folder.rglob("*.py")):
        cached = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        data = cached.read_bytes() if cached.is_file() else b""
        if len(data) < 16 or int.from_bytes(data[4:8], "little") != 0b01 \
                or marshal.loads(data[16:]).co_filename != f"{run_at}/{source.relative_to(folder)}":
            missing.append(str(source.relative_to(folder)))
    return missing


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


DOCS = Path(__file__).parents[1] / "docs"
DOCUMENTED_BASE = "localhost/python:3.11-bookworm"


def offline_base_lines() -> list[str]:
    """The console lines of docs/images.md's offline recipe."""
    text = (DOCS / "images.md").read_text(encoding="utf-8")
    section = text[text.index("## Building without a container registry"):]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def documented_base(folder: Path) -> str:
    """The amd64 base made by docs/images.md's lines, as typed in an empty folder but for the
    tag; `debootstrap` is a stand-in that checks the documented suite and packages and
    unpacks the cached stand-in root file system (made by debootstrap, tests/standin.py)."""
    *making, image_line = offline_base_lines()
    assert image_line == f"mlpack image out/digits-demo-x86-cpu --base-image {DOCUMENTED_BASE}"
    assert re.fullmatch(rf"debootstrap --variant=minbase --include={','.join(PACKAGES)} {SUITE} rootfs \S+",
                        making[0]), making[0]
    ref = f"localhost/mlpack-test/documented-base:{uuid.uuid4().hex[:12]}"
    tools = folder / "stand-in-tools"
    tools.mkdir(parents=True)
    (tools / "debootstrap").write_text(f'#!/bin/sh\nmkdir -p "$4" && tar -C "$4" -xf {rootfs_tarball("amd64")}\n')
    (tools / "debootstrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    for line in making:
        done = subprocess.run(["bash", "-c", line.replace(DOCUMENTED_BASE, ref)], cwd=folder, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{line!r} failed: {done.stderr[-1500:]}"
    return ref


@pytest.fixture(scope="module")
@heavy
def bases(tmp_path_factory) -> Iterator[dict[str, str]]:
    made = documented_base(tmp_path_factory.mktemp("documented-base"))
    yield {"amd64": made, "arm64": ensure_standin("arm64")}
    buildah("rmi", "-f", made, check=False)


@pytest.fixture(scope="module")
@heavy
def artifacts(demo_artifact, bases, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """Copies of the demo artifacts with their images built, never pushed: a test that pushes
    (and so writes the manifest) works on its own copy (`private`)."""
    out = tmp_path_factory.mktemp("image-artifacts")
    built = {}
    for target, arch in TARGETS.items():
        artifact = own_image_name(shutil.copytree(demo_artifact(target).path, out / demo_artifact(target).path.name),
                                  "image")
        result = cli("image", str(artifact), "--builder", "buildah", "--base-image", bases[arch], "-q")
        assert result.exit_code == 0, result.output
        built[target] = artifact
    yield built
    # Leave no images behind in the machine's store (the stand-in bases stay: they are the cache).
    for artifact in built.values():
        buildah("rmi", "-f", read_json(artifact)["image"]["id"], check=False)


def private(artifacts: dict[str, Path], target: str, folder: Path) -> Path:
    """A test's own copy of an image-built artifact (pushing records the digest in it)."""
    return shutil.copytree(artifacts[target], folder / artifacts[target].name)


@pytest.fixture
@local
def registry_host(tmp_path: Path):
    with registry(tmp_path / "registry") as host:
        yield host


def test_images_are_non_root_labelled_and_hold_only_what_serving_needs(artifacts) -> None:
    for target, arch in TARGETS.items():
        manifest = read_json(artifacts[target])
        image = manifest["image"]
        info = image_config(image["local"])
        config = info["Docker"]["config"]
        assert info["OCIv1"]["architecture"] == arch
        assert "sha256:" + info["FromImageID"] == image["id"]
        assert config["User"] == "10001:10001"
        assert config["Healthcheck"]["Test"][0] == "CMD"
        labels = config["Labels"]
        assert labels["dev.mlpack.model.sha256"] == manifest["model"]["sha256"]
        assert labels["org.opencontainers.image.version"] == image["tag"]
        assert labels["org.opencontainers.image.source"].startswith("https://")
        container = buildah("from", "--pull=never", image["local"]).stdout.strip()
        try:
            root = Path(buildah("mount", container).stdout.strip())
            site = root / "opt/mlpack/site-packages"
            assert (site / "onnxruntime").is_dir() and (site / "bentoml").is_dir()
            assert (site / "mlpack_agent" / "agent.py").is_file(), "the telemetry agent is installed"
            assert json.loads((root / "opt/mlpack/agent/agent.json").read_text())["resource"]["mlpack.target"] == target
            assert (root / "var/lib/mlpack-agent").stat().st_uid == 10001
            assert not (site / "numpy" / "_core" / "tests").exists()
            # Bytecode for every module, compiled at build: nothing is compiled at a start.
            assert missing_bytecode(site, "/opt/mlpack/site-packages") == []
            assert missing_bytecode(root / "usr/lib/python3.11", "/usr/lib/python3.11") == []
            assert missing_bytecode(root / "opt/mlpack/bento/src", "/opt/mlpack/bento/src") == []
            assert not (site / "bin").exists(), "no console scripts with the build host's interpreter path"
            assert not list((site / "onnxruntime" / "capi").glob("libonnxruntime.so*")), "C API library unused"
            # No shell, no package manager, no compiler: the base's Python and the libraries it links.
            for leftover in ("bin/sh", "usr/bin/bash", "usr/bin/apt-get", "usr/bin/dpkg", "usr/bin/gcc",
                             "root/.cache/pip", "opt/mlpack/wheels", "usr/lib/python3.11/test"):
                assert not (root / leftover).exists(), leftover
            assert not list((root / "var/lib/apt/lists").glob("*_Packages*"))
        finally:
            buildah("rm", container, check=False)


def test_a_refused_push_records_no_digest(artifacts, tmp_path: Path) -> None:
    artifact = private(artifacts, "x86-cpu", tmp_path)
    assert read_json(artifact)["image"]["digest"] is None  # never pushed
    before = (artifact / "manifest.json").read_bytes()
    with registry(tmp_path / "readonly", read_only=True) as host:
        result = cli("push", str(artifact), "--to", f"{host}/demo/digits:refused", "--builder", "buildah", "-q")
    assert result.exit_code != 0
    assert result.stderr.startswith(f"error: push to {host}/demo/digits:refused failed: ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert read_json(artifact)["image"]["digest"] is None
    assert (artifact / "manifest.json").read_bytes() == before

    # Nothing listens there any more: the same clear line, still no digest.
    result = cli("push", str(artifact), "--to", f"{host}/demo/digits:gone", "--builder", "buildah", "-q")
    assert result.exit_code != 0
    assert result.stderr.startswith(f"error: push to {host}/demo/digits:gone failed: ")
    assert "connection refused" in result.stderr
    assert result.stderr.count("\n") == 1
    assert read_json(artifact)["image"]["digest"] is None
    assert (artifact / "manifest.json").read_bytes() == before


def test_credentials_come_from_the_docker_config(artifacts, tmp_path: Path, monkeypatch) -> None:
    """A registry with a password: wrong ones are one clear line; right ones (docker config) push."""
    artifact = private(artifacts, "x86-cpu", tmp_path)
    with registry(tmp_path / "private", user=("robot", "s3cret")) as host:
        for password in ("wrong", "s3cret"):
            auth = base64.b64encode(f"robot:{password}".encode()).decode()
            config = tmp_path / password
            config.mkdir()
            (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
            monkeypatch.setenv("DOCKER_CONFIG", str(config))
            result = cli("push", str(artifact), "--to", f"{host}/team/digits:1", "--builder", "buildah", "-q")
            if password == "wrong":
                assert result.exit_code != 0
                assert result.stderr.startswith(f"error: registry {host} refused the credentials for ")
                assert result.stderr.rstrip().endswith(
                    f"log in first (docker login {host}) or check the credential helper")
                assert result.stderr.count("\n") == 1
                assert read_json(artifact)["image"]["digest"] is None
            else:
                assert result.exit_code == 0, result.output
                recorded = read_json(artifact)["image"]
                assert recorded["ref"] == f"{host}/team/digits@{recorded['digest']}"


def test_push_both_pull_back_by_digest_and_predict_inside(artifacts, registry_host, tmp_path: Path) -> None:
    pushed = {target: private(artifacts, target, tmp_path / target) for target in TARGETS}
    x86, arm = pushed["x86-cpu"], pushed["arm-edge"]
    dest = f"{registry_host}/demo/digits:test"
    result = cli("push", str(x86), str(arm), "--to", dest, "--builder", "buildah", "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # --json: one summary, nothing else on stdout
    assert {i["platform"] for i in summary["images"]} == {"linux/amd64", "linux/arm64"}
    assert summary["pinned"] == f"{registry_host}/demo/digits@{summary['index']['digest']}"

    # The multi-arch index under the tag points at both images, by the digests recorded.
    index = requests.get(f"http://{registry_host}/v2/demo/digits/manifests/test",
                         headers={"Accept": "application/vnd.oci.image.index.v1+json"}).json()
    by_platform = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    recorded = {target: read_json(pushed[target])["image"] for target in TARGETS}
    assert by_platform == {arch: recorded[target]["digest"] for target, arch in TARGETS.items()}
    for target in TARGETS:
        assert recorded[target]["ref"] == f"{registry_host}/demo/digits@{recorded[target]['digest']}"
        assert recorded[target]["index"]["digest"] in result.stdout

    # Pull each image by digest into an empty image store, run it, compare with the host.
    rows, labels = held_out_demo_rows(ROWS)
    store = tmp_path / "pulled"
    for target, arch in TARGETS.items():
        by_digest = recorded[target]["ref"]
        buildah("pull", "--tls-verify=false", "--quiet", by_digest, store=store)
        pulled = image_config(by_digest, store)
        assert "sha256:" + pulled["FromImageID"] == recorded[target]["id"]
        answer = json.loads(run_python(by_digest, PREDICT, json.dumps(rows.tolist()), store=store))

        host = ort.InferenceSession(str(artifacts[target] / "model" / "model.onnx"),
                                    providers=["CPUExecutionProvider"])
        expected_labels, expected_probs = host.run(["label", "probabilities"], {"pixels": rows})
        assert answer["label"] == expected_labels.tolist(), target
        np.testing.assert_allclose(np.array(answer["probabilities"]), expected_probs, atol=1e-3)
        assert answer["uncompiled"] == [], f"{target}: imported without bytecode"
        assert (np.array(answer["label"]) == labels).mean() >= 0.9, f"{target} ({arch}) predicts badly"


def test_the_image_sizes_quick_check_passes_on_the_x86_image(artifacts) -> None:
    """benchmarks/image_sizes.py --quick --check on the image this file built (no build of its own)."""
    assert read_json(artifacts["x86-cpu"])["image"]["id"]
    quick_check("image_sizes", "--artifact", str(artifacts["x86-cpu"]))


def test_the_image_start_quick_check_passes_on_the_x86_image(artifacts) -> None:
    """benchmarks/image_start.py --quick --check on the image this file built: ready sooner with its
    bytecode than the same image without it."""
    assert read_json(artifacts["x86-cpu"])["image"]["id"]
    quick_check("image_start", "--artifact", str(artifacts["x86-cpu"]))


def test_the_x86_image_serves_predictions_and_its_agent_counts_them(artifacts) -> None:
    """The image's own CMD (BentoML) and the agent sidecar command, in one container (shared /tmp)."""
    image = read_json(artifacts["x86-cpu"])["image"]
    config = image_config(image["local"])["Docker"]["config"]
    port, metrics_port = free_port(), free_port()
    command = list(config["Cmd"])
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    rows, _ = held_out_demo_rows(4)
    with serving(image["local"], command, {}) as (_, start):
        start(["python3", "-m", "mlpack_agent.main", "--config", "/opt/mlpack/agent/agent.json"],
              {"MLPACK_AGENT_PROMETHEUS_PORT": str(metrics_port), "MLPACK_AGENT_PROMETHEUS_HOST": "127.0.0.1"})
        wait_for(f"http://127.0.0.1:{metrics_port}/metrics")
        wait_for(f"http://127.0.0.1:{port}/readyz")
        answer = requests.post(f"http://127.0.0.1:{port}/predict", json={"inputs": {"pixels": rows.tolist()}},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        host = ort.InferenceSession(str(artifacts["x86-cpu"] / "model" / "model.onnx"),
                                    providers=["CPUExecutionProvider"])
        assert answer.json()["outputs"]["label"] == host.run(["label"], {"pixels": rows})[0].tolist()
        bad = requests.post(f"http://127.0.0.1:{port}/predict", json={"inputs": {"pixels": [[1, 2]]}}, timeout=30)
        assert bad.status_code == 400
        v2 = requests.post(f"http://127.0.0.1:{port}/v2/models/{DEMO_NAME}/infer", timeout=30, json={
            "inputs": [{"name": "pixels", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]})
        assert v2.status_code == 200, v2.text  # the Open Inference Protocol inside the shell-less image
        assert next(o for o in v2.json()["outputs"] if o["name"] == "label")["data"] == answer.json()["outputs"]["label"]

        deadline = time.monotonic() + 20
        while True:
            metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
            counted = re.search(r'^mlpack_inference_requests_total\{[^}]*\} ([0-9.e+]+)$', metrics, re.M)
            if counted and float(counted.group(1)) >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert counted and float(counted.group(1)) >= 1, "the agent in the image counted the request"


def test_build_with_image_builds_the_artifact_and_its_image(linear_onnx: Path, bases, tmp_path: Path) -> None:
    result = cli("build", str(linear_onnx), "-t", "x86-cpu", "-o", str(tmp_path), "-q",
                 "--image", "--base-image", bases["amd64"])
    assert result.exit_code == 0, result.output
    image = read_json(tmp_path / "linear-x86-cpu")["image"]
    assert f"image      {image['local']}  linux/amd64  {image['id']}" in result.stdout
    assert "sha256:" + image_config(image["local"])["FromImageID"] == image["id"]
    buildah("rmi", "-f", image["id"], check=False)


def test_a_registry_answering_503_is_retried_until_the_push_lands(artifacts, registry_host, tmp_path: Path) -> None:
    """A load balancer in front of the registry says 503 to the first requests: buildah's push
    fails, mlpack waits and pushes again, and the digest it records is the registry's."""
    artifact = private(artifacts, "x86-cpu", tmp_path)
    proxy = Flaky503Proxy(registry_host, failures=1)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        result = cli("push", str(artifact), "--to", f"{proxy.host}/demo/flaky:1", "--builder", "buildah")
    finally:
        proxy.shutdown()
    assert result.exit_code == 0, result.output
    assert "503" in result.stderr and "retrying in 1s (attempt 2 of 4)" in result.stderr
    recorded = read_json(artifact)["image"]
    stored = requests.get(f"http://{registry_host}/v2/demo/flaky/manifests/1",
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert stored.headers["Docker-Content-Digest"] == recorded["digest"]
