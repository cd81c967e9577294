"""`mlpack serve ARTIFACT`: an x86-cpu and an aws-lambda artifact answer /readyz and
predictions as in production, the telemetry agent beside them counts every prediction on
its /metrics, docs/serving.md's requests for each route they serve work as typed, and
SIGTERM (or Ctrl-C) stops everything: no process is left behind."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app

from .agent_harness import free_port, wait_for
from .conftest import REPO
from .demo_data import demo_rows
from .served_apps import alive, descendants, start_serve
from .serving_docs import (
    DEMO, SERVING_DOC, demo_checks, documented_lines, documented_row, requires_curl, run_documented,
)

pytestmark = pytest.mark.slow
N_PREDICTIONS = 7


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lambda_serves(route: str) -> bool:
    """A Function URL's routes (docs/serving.md's table): /v2/..., and /predict for any other path."""
    return route == "/predict" or route.startswith("/v2")


@requires_curl
@pytest.mark.parametrize("target", ["x86-cpu", "aws-lambda"])
def test_serve_answers_counts_predictions_and_leaves_nothing_running(demo_artifact, tmp_path: Path,
                                                                     target: str) -> None:
    artifact = demo_artifact(target).path
    port, agent_port = free_port(), free_port()
    proc, out = start_serve(artifact, port, agent_port, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "Ctrl-C or SIGTERM" in out.read_text() or proc.poll() is not None, 180, interval_s=0.3,
                 what="mlpack serve to print its URLs")
        assert proc.poll() is None, (tmp_path / "serve.err").read_text()[-3000:]
        printed = out.read_text()
        assert f"POST {base}/predict" in printed and f"GET  {base}/readyz" in printed
        assert f"GET  http://127.0.0.1:{agent_port}/metrics" in printed

        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        pixels, labels = demo_rows(3)
        for _ in range(N_PREDICTIONS):
            reply = httpx.post(f"{base}/predict", json={"inputs": {"pixels": pixels.tolist()}}, timeout=60)
            assert reply.status_code == 200, reply.text
            assert reply.json()["outputs"]["label"] == labels.tolist()
        bad = httpx.post(f"{base}/predict", json={"inputs": {"pixels": [[1.0, 2.0]]}}, timeout=60)
        assert bad.status_code == 400 and "expected float32 [?, 64]" in bad.text

        def counted() -> float:
            from prometheus_client.parser import text_string_to_metric_families

            text = httpx.get(f"http://127.0.0.1:{agent_port}/metrics", timeout=5).text
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "mlpack_inference_requests_total"
                       and s.labels.get("service_name") == artifact.name)

        wait_for(lambda: counted() == N_PREDICTIONS + 1, 30, interval_s=0.3,
                 what=f"the agent to count {N_PREDICTIONS + 1} requests")

        # docs/serving.md's requests, as typed, for every route this entry point serves.
        row, label = demo_rows(1)
        np.testing.assert_array_equal(documented_row(), row[0])  # the documented row is the demo's own
        lines = [(route, line) for route, line in documented_lines() if "photo.png" not in line
                 and (target == "x86-cpu" or lambda_serves(route) or not route)]
        sent = run_documented(lines, base, tmp_path / "documented", demo_checks(int(label[0])))
        assert set(sent) == {route for route, _ in lines if route}

        running = descendants(proc.pid)
        assert len(running) >= 2  # the agent and the service, at least
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = [pid for pid in running if alive(pid)]
    assert left == [], f"still running after SIGTERM: {left}"
    assert port_free(port) and port_free(agent_port)
    assert "nothing is left running" in (tmp_path / "serve.err").read_text()
    # Only read: no __pycache__ (or anything else) written into it, so it still signs and verifies.
    assert Artifact.open(artifact).problems() == []


def test_serve_refuses_a_port_in_use_in_one_line(demo_artifact) -> None:
    artifact = demo_artifact("x86-cpu").path
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(artifact), "--port", str(port)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: port {port} on 127.0.0.1 is not free")
    assert result.stderr.rstrip().endswith("pass another --port, or stop what listens there")
    assert result.stderr.count("\n") == 1


def test_serving_md_sends_a_request_to_every_route_the_artifacts_serve() -> None:
    """Every route of the Bento service template and of the routes table, Open Inference
    Protocol included, has a request in docs/serving.md's route section."""
    service = (REPO / "templates" / "bento" / "service.py.j2").read_text()
    table = SERVING_DOC.read_text().split("\n## ")[0]  # the routes table, before the first section
    routes = set(re.findall(r'(?:route=|Route\()"(/[^"{]+)"', service))  # BentoML's APIs, mlpack's Starlette routes
    routes |= {route.replace("NAME", DEMO) for route in re.findall(r"`(?:GET |POST )?(/(?:v2|readyz|livez)[^`]*)`",
                                                                       table)}
    assert {"/predict", "/predict_batch", "/predict_npz", "/predict_image", "/v2/models/digits-demo/infer"} <= routes
    documented = {route for route, _ in documented_lines()}
    assert routes - documented == set()


def test_a_gpu_artifact_without_its_gpu_refuses_to_start_in_one_line_and_serves_on_the_cpu_when_told(
        demo_artifact, tmp_path: Path) -> None:
    """This host has no GPU: `mlpack serve` runs the cuda-gpu Bento on the onnxruntime-gpu it pins, whose CUDA
    provider cannot load here. It stops before any worker starts, naming the library; with --allow-cpu it
    serves, and the agent exports the provider it really runs on (what the GPU alert watches)."""
    artifact = demo_artifact("cuda-gpu").path
    port, agent_port = free_port(), free_port()
    refused = subprocess.run([str(Path(sys.executable).with_name("mlpack")), "serve", str(artifact), "--port",
                              str(port), "--agent-port", str(agent_port)], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode != 0
    assert "mlpack: not ready: CUDAExecutionProvider did not load, so the model would run on CPUExecutionProvider: " \
           "libonnxruntime_providers_cuda.so needs libcublasLt.so.13" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: bentoml serve exited with status 3")
    assert port_free(port) and port_free(agent_port), "nothing is left listening"

    out = tmp_path / "allowed.out"
    served = subprocess.Popen([str(Path(sys.executable).with_name("mlpack")), "serve", str(artifact), "--port",
                               str(port), "--agent-port", str(agent_port), "--allow-cpu"],
                              stdout=open(out, "wb"), stderr=open(tmp_path / "allowed.err", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "Ctrl-C or SIGTERM" in out.read_text() or served.poll() is not None, 180, interval_s=0.3,
                 what="mlpack serve --allow-cpu to print its URLs")
        assert served.poll() is None, (tmp_path / "allowed.err").read_text()[-3000:]
        pixels, labels = demo_rows(3)
        reply = httpx.post(f"{base}/predict", json={"inputs": {"pixels": pixels.tolist()}}, timeout=60)
        assert reply.status_code == 200 and reply.json()["outputs"]["label"] == labels.tolist()

        def provider() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{agent_port}/metrics", timeout=5).text
            found = re.search(r'mlpack_execution_provider_info\{[^}]*execution_provider="(\w+)"', text)
            return found.group(1) if found else None

        wait_for(lambda: provider() is not None, 30, interval_s=0.3, what="the agent to export the provider")
        assert provider() == "CPUExecutionProvider"
        assert "mlpack: serving on CPUExecutionProvider on purpose (MLPACK_ALLOW_CPU=1)" in \
            (tmp_path / "allowed.err").read_text()
    finally:
        served.send_signal(signal.SIGTERM)
        served.wait(timeout=60)
