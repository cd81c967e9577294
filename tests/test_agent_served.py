"""End to end: a served Bento answers N real HTTP requests, its telemetry client reports
them to the agent (run from the artifact's own agent/agent.json), and a real Prometheus
scraping the agent counts exactly N.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlpack.build import BuildRequest, build
from mlpack.progress import Progress

from .agent_harness import AgentProcess, PrometheusServer, wait_for
from .models import linear_model
from .served_apps import BentoServer

pytestmark = pytest.mark.slow

N_OK = 25
N_BAD = 4


@pytest.mark.requires_tool("prometheus", hint="apt-get install prometheus")
def test_prometheus_counts_every_request_the_served_model_answers(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx", features=4, outputs=3)
    artifact = build(BuildRequest(model=model, target="x86-cpu", out=tmp_path / "out"), Progress(quiet=True)).path
    config_file = artifact / "agent" / "agent.json"
    service_name = json.loads(config_file.read_text())["resource"]["service.name"]
    agent = AgentProcess(tmp_path / "agent", config_file=config_file).start()
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{agent.port}"]).start()
    server = None
    try:
        server = BentoServer(artifact / "bento", tmp_path / "bentoml-home",
                             env={"MLPACK_AGENT_SOCKET": agent.socket, "MLPACK_AGENT_LINGER_S": "0.05"})
        base = server.url
        x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
        for _ in range(N_OK):
            assert httpx.post(f"{base}/predict", json={"inputs": {"x": x.tolist()}}, timeout=30).status_code == 200
        for _ in range(N_BAD):
            assert httpx.post(f"{base}/predict", json={"inputs": {"x": [[1.0]]}}, timeout=30).status_code == 400

        def count(promql: str) -> float:
            result = prometheus.query(promql)
            return float(result[0]["value"][1]) if result else -1.0

        requests = f'sum(mlpack_inference_requests_total{{service_name="{service_name}"}})'
        wait_for(lambda: count(requests) == N_OK + N_BAD, 30, interval_s=0.5,
                 what=f"Prometheus to count {N_OK + N_BAD} requests")
        errors = f'sum(mlpack_inference_errors_total{{service_name="{service_name}", error_kind="bad_request"}})'
        assert count(errors) == N_BAD
        batch_rows = f'sum(mlpack_inference_batch_size_sum{{service_name="{service_name}"}})'
        assert count(batch_rows) == 2 * N_OK
        # The service's labels equal the agent's resource: one series, no stray attributes.
        assert len(prometheus.query(f'mlpack_inference_requests_total{{service_name="{service_name}"}}')) == 1
    finally:
        if server is not None:
            server.close()
        prometheus.stop()
        agent.stop()
