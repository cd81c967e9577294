"""A real Prometheus scrapes a real agent while inference events arrive through the client.

Events are reported by `mlpack.runtime.telemetry.InferenceReporter`, the very object the
generated service and Lambda handler call after each request, driven here from the test
process with real numpy inputs and outputs (no HTTP server in between). The agent runs
from the agent.json mlpack renders for the artifact, and the generated dashboard's
queries and alert rules are evaluated against what Prometheus scraped from it.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpack.runtime.telemetry import InferenceReporter
from mlpack_agent.client import EventClient
from mlpack_agent.metrics import PROMETHEUS_NAMES

from .agent_harness import AgentProcess, OtlpReceiver, PrometheusServer, rules_firing_at_once, wait_for
from .agent_files import dashboard_queries, metric_names, render_agent_files
from .pyramid import heavy

pytestmark = [pytest.mark.slow, pytest.mark.requires_tool("prometheus", hint="apt-get install prometheus")]

ARTIFACT = "digits-x86-cpu"
N_REQUESTS = 137
N_ERRORS = 7
# Labels as the service runtime sends them (packager/mlpack/steps/app.py runtime_json).
LABELS = {"model_name": "digits", "model_sha256": "c" * 64, "model_variant": "float",
          "target": "x86-cpu", "mlpack_version": "0.1.0"}


def _reporter(outputs: list[dict], socket_path: str) -> InferenceReporter:
    os.environ["MLPACK_AGENT_SOCKET"] = socket_path
    try:
        return InferenceReporter(LABELS, outputs)
    finally:
        del os.environ["MLPACK_AGENT_SOCKET"]


@pytest.fixture(scope="module")
@heavy
def live(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("agent-prometheus")
    files = render_agent_files("x86-cpu")
    (root / "alerts.yaml").write_text(files["alerts.yaml"])
    rendered = yaml.safe_load(files["agent.json"])  # JSON is YAML
    receiver = OtlpReceiver().start()  # so that the buffer metrics exist too
    agent = AgentProcess(
        root / "agent", resource=rendered["resource"],
        otlp={"endpoint": receiver.endpoint, "interval_s": 1},
    ).start()
    prometheus = PrometheusServer(root / "prometheus", [f"127.0.0.1:{agent.port}"],
                                  rule_files=[str(root / "alerts.yaml")])
    prometheus.start()
    try:
        clients = _send_requests(agent)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as junk:  # the agent must shrug it off
            junk.sendto(b"not an event batch", agent.socket)
        yield agent, prometheus, files, clients
    finally:
        prometheus.stop()
        agent.stop()
        receiver.stop()


def _send_requests(agent: AgentProcess) -> tuple[EventClient, EventClient]:
    classifier = _reporter([{"name": "label", "dtype": "int64", "shape": [None]}], agent.socket)
    embedder = _reporter([{"name": "embedding", "dtype": "float32", "shape": [None, 8]}], agent.socket)
    classifier.client.provider("CPUExecutionProvider")  # what the service reports once at start
    rng = np.random.default_rng(0)
    for i in range(N_REQUESTS):
        started = time.perf_counter()
        arrays = {"pixels": rng.random((1, 64), dtype=np.float32)}
        model_started = time.perf_counter()
        if i < N_ERRORS:
            classifier.failure(started, "invalid_input")
        elif i % 2:
            classifier.success(started, model_started, arrays, [np.array([i % 10]), arrays["pixels"]])
        else:
            embedder.success(started, model_started, arrays, [rng.random((1, 8), dtype=np.float32)])
    classifier.client.flush()
    embedder.client.flush()
    return classifier.client, embedder.client


def _state(prometheus: PrometheusServer, alert: str) -> str:
    """An alerting rule's state in Prometheus: inactive, pending or firing."""
    rules = prometheus.api("/api/v1/rules")["groups"][0]["rules"]
    return next(r for r in rules if r["name"] == alert)["state"]


def _scalar(prometheus: PrometheusServer, promql: str) -> float:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else math.nan


def test_promql_counts_every_request(live) -> None:
    agent, prometheus, _, clients = live
    assert sum(c.dropped for c in clients) == 0
    assert sum(c.sent for c in clients) == N_REQUESTS
    total = f'sum(mlpack_inference_requests_total{{service_name="{ARTIFACT}"}})'
    wait_for(lambda: _scalar(prometheus, total) == N_REQUESTS, 30, interval_s=0.5,
             what=f"Prometheus to count {N_REQUESTS} requests")
    errors = f'sum(mlpack_inference_errors_total{{service_name="{ARTIFACT}", error_kind="invalid_input"}})'
    assert _scalar(prometheus, errors) == N_ERRORS
    # The client's labels match the agent's resource, so they add no series of their own.
    series = prometheus.query(f'mlpack_inference_requests_total{{service_name="{ARTIFACT}"}}')
    assert len(series) == 1
    assert series[0]["metric"]["mlpack_model_name"] == "digits"
    assert series[0]["metric"]["mlpack_target"] == "x86-cpu"


def test_dashboard_queries_use_metrics_the_agent_exports(live) -> None:
    agent, prometheus, files, _ = live
    dashboard = yaml.safe_load(files["dashboard.json"])
    # Two scrapes after the traffic, so that rate() has points to work with.
    wait_for(lambda: _scalar(prometheus, f'sum(mlpack_inference_requests_total{{service_name="{ARTIFACT}"}})') > 0,
             30, interval_s=0.5, what="requests in Prometheus")
    time.sleep(2.5)
    exported = set(prometheus.api("/api/v1/label/__name__/values"))
    temperature_exposed = any(Path("/sys/class/thermal").glob("thermal_zone*/temp"))
    empty = []
    for expr in dashboard_queries(dashboard):
        names = metric_names(expr)
        if "mlpack_host_temperature_celsius" in names and not temperature_exposed:
            continue  # this machine's /sys has no thermal zones
        assert names <= exported, f"{expr} uses metrics the agent does not export: {names - exported}"
        query = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
        if not prometheus.query(query):
            empty.append(query)
    assert empty == []
    variable = dashboard["templating"]["list"][1]["query"]["query"]
    assert variable.startswith("label_values(target_info{") and "target_info" in exported


def test_alert_rules_load_and_evaluate(live) -> None:
    _, prometheus, _, _ = live
    groups = wait_for(lambda: prometheus.api("/api/v1/rules")["groups"], 20, what="rules to load")
    rules = groups[0]["rules"]
    assert len(rules) == 5
    wait_for(lambda: all(r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
                         for r in prometheus.api("/api/v1/rules")["groups"][0]["rules"]),
             20, what="every rule to be evaluated")
    for rule in prometheus.api("/api/v1/rules")["groups"][0]["rules"]:
        assert rule["health"] == "ok", rule
    # The agent is up: once Prometheus has scraped it (a rule evaluated before the first scrape
    # sees no target_info yet, and is pending), the agent-down alert is silent.
    wait_for(lambda: prometheus.query("target_info"), 20, what="Prometheus to scrape the agent")

    wait_for(lambda: _state(prometheus, "MlpackAgentDown") == "inactive", 20, interval_s=0.5,
             what="MlpackAgentDown to be inactive while the agent answers")


def test_killing_the_agent_fires_agent_down_in_prometheus(tmp_path: Path) -> None:
    """The shipped MlpackAgentDown rule, live: an agent Prometheus scrapes is killed (kill -9) and
    the alert fires. Its own agent and Prometheus (the module's are shared by the other tests). The
    rule's `for:` (5m) is set to 0 here so that it fires within the test; tests/test_alert_rules.py
    checks the `for:` itself with promtool."""
    files = render_agent_files("x86-cpu")
    rules = rules_firing_at_once(yaml.safe_load(files["alerts.yaml"])["groups"], tmp_path / "alerts.json")
    agent = AgentProcess(tmp_path / "agent", resource=yaml.safe_load(files["agent.json"])["resource"]).start()
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{agent.port}"], rule_files=[str(rules)])
    try:
        prometheus.start()
        wait_for(lambda: prometheus.query("target_info"), 20, what="Prometheus to scrape the agent")
        wait_for(lambda: _state(prometheus, "MlpackAgentDown") == "inactive", 20, interval_s=0.5,
                 what="MlpackAgentDown inactive while it answers")
        agent.kill()
        wait_for(lambda: _state(prometheus, "MlpackAgentDown") == "firing", 30, interval_s=0.5,
                 what="MlpackAgentDown to fire")
        alert = next(a for a in prometheus.api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == "MlpackAgentDown")
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["service_name"] == ARTIFACT
    finally:
        prometheus.stop()
        agent.stop()


def test_the_documented_metric_names_are_the_exported_ones(live) -> None:
    _, prometheus, _, _ = live
    malformed = f'sum(mlpack_agent_refused_total{{service_name="{ARTIFACT}", reason="malformed"}})'
    wait_for(lambda: _scalar(prometheus, malformed) == 1, 20, interval_s=0.5, what="the junk datagram counted")
    exported = set(prometheus.api("/api/v1/label/__name__/values"))
    missing = {key: name for key, name in PROMETHEUS_NAMES.items()
               if name not in exported and f"{name}_bucket" not in exported}
    assert missing == {}
