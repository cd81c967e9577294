"""Every PromQL query the generated alerts, canary checks and autoscalers hold, evaluated by a
real Prometheus on what a real served artifact reported.

One x86-cpu artifact is built (`--autoscaler keda --delivery argo-rollouts`, its target's [slo]:
at most 2% errors, p99 at most 0.5 s) with a processing hook that makes a request marked
with SLOW_MARKER wait 0.8 s: latency injected on the served path itself, measured by the
runtime like any other. `bentoml serve` runs its Bento, reporting to the agent started from
the artifact's own agent.json; Debian's Prometheus scrapes that agent and loads the rules of
the artifact's PrometheusRule (their `for:` set to 0 so that they fire within the test:
tests/test_alert_rules.py checks each `for:` with promtool). The artifact's IaC is rendered
again from its manifest with the other engines (Flagger, KEDA in KServe), so that every
engine's files are evaluated against the same series.

The GPU objective (running on the accelerator) cannot come from a served model here (no
GPU): a second agent, started from a cuda-gpu artifact's agent.json, receives what a GPU
service reports through the same client (`mlpack.runtime.telemetry.InferenceReporter`):
first the CUDA provider, then the CPU provider, as a GPU artifact whose CUDA provider did not
load and that was started with MLPACK_ALLOW_CPU=1 reports it.

How each engine reads a value is restated here from its source (the pinned releases of
tests/crds/sources.json): Argo Rollouts evaluates its conditions on the vector's values
(metricproviders/prometheus, utils/evaluate: an empty vector is an error, a measurement that
meets neither condition is inconclusive); the conditions are `result[0] <= N` and
`result[0] > N`, which mean the same in expr-lang and in Python, so Python evaluates them
(after checking they are nothing more). Flagger takes the value and halts on NaN or nothing
(pkg/metrics/providers/prometheus.go), then compares it with thresholdRange.max. KEDA reads
at most one element, an empty answer as 0, NaN or infinity as 0 (pkg/scalers/prometheus_scaler.go).
"""

from __future__ import annotations

import ast
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.build import BuildRequest, build
from mlpack.cli import app
from mlpack.render.iac import render_iac
from mlpack.processing.request import ProcessingRequest
from mlpack.progress import Progress
from mlpack.render.context import RenderContext
from mlpack.render.templates import render_group
from mlpack.runtime.telemetry import InferenceReporter

from .agent_harness import AgentProcess, PrometheusServer, rules_firing_at_once, wait_for
from .manifests import render_context
from .models import linear_model
from .served_apps import BentoServer

pytestmark = [pytest.mark.slow, pytest.mark.phases,
              pytest.mark.requires_tool("prometheus", hint="apt-get install prometheus")]

SLOW_MARKER = 7777.0
HOOK = f'''"""Test processing: a request whose first value is {SLOW_MARKER} waits 0.8 s (latency injected)."""
import time


def preprocess(inputs):
    if float(inputs["x"].flat[0]) == {SLOW_MARKER}:
        time.sleep(0.8)
    return inputs
'''
# The engines each artifact's files are rendered for, besides what it was built with.
CHOICES = [("keda", "argo-rollouts"), ("keda", "flagger"), ("hpa", "flagger")]
N_OK, N_BAD, N_SLOW = 30, 30, 3


@dataclass(frozen=True)
class Query:
    """One PromQL query found in a generated file, and how its engine judges the value."""

    file: str
    kind: str  # PrometheusRule, AnalysisTemplate, MetricTemplate, ScaledObject, InferenceService
    name: str  # the alert, metric or trigger
    promql: str
    success: str | None = None  # Argo's conditions
    failure: str | None = None
    max: float | None = None  # Flagger's thresholdRange.max


# --- what the generated files hold --------------------------------------------------------

def documents(files: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and "kind" in doc:
                    yield path, doc


def every_promql_string(node: Any) -> Iterator[str]:
    """Every value under a key that holds PromQL (`expr`, `query`), anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from every_promql_string(value)
    elif isinstance(node, list):
        for item in node:
            yield from every_promql_string(item)


def queries(files: dict[str, str]) -> list[Query]:
    found: list[Query] = []
    thresholds: dict[str, float] = {}
    for path, doc in documents(files):
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "PrometheusRule":
            found += [Query(path, kind, r["alert"], r["expr"]) for g in spec["groups"] for r in g["rules"]]
        elif kind == "AnalysisTemplate":
            found += [Query(path, kind, m["name"], m["provider"]["prometheus"]["query"], m["successCondition"],
                            m["failureCondition"]) for m in spec["metrics"]]
        elif kind == "Canary":
            thresholds.update({m["templateRef"]["name"]: m["thresholdRange"]["max"] for m in spec["analysis"]["metrics"]})
        elif kind == "MetricTemplate":
            found.append(Query(path, kind, doc["metadata"]["name"], spec["query"]))
        elif kind == "ScaledObject":
            found += [Query(path, kind, t["name"], t["metadata"]["query"]) for t in spec["triggers"]]
        elif kind == "InferenceService":
            found += [Query(path, kind, "external", m["external"]["metric"]["query"])
                      for m in spec["predictor"]["autoScaling"]["metrics"] if m["type"] == "External"]
    found = [Query(q.file, q.kind, q.name, q.promql, q.success, q.failure, thresholds[q.name])
             if q.kind == "MetricTemplate" else q for q in found]
    # Nothing that holds PromQL was left out.
    assert sorted(q.promql for q in found) == sorted(s for _, doc in documents(files) for s in every_promql_string(doc))
    return found


# --- how each engine reads a value -----------------------------------------------------------

_CONDITION = (ast.Expression, ast.Compare, ast.Subscript, ast.Name, ast.Constant, ast.Load, ast.LtE, ast.Gt, ast.UnaryOp,
              ast.USub)


def argo_phase(result: list[dict[str, Any]], success: str, failure: str) -> str:
    values = [float(sample["value"][1]) for sample in result]
    if not values:
        return "Error"  # result[0] of an empty vector

    def holds(condition: str) -> bool:
        tree = ast.parse(condition, mode="eval")
        assert all(isinstance(node, _CONDITION) for node in ast.walk(tree)), condition
        return bool(eval(compile(tree, "<condition>", "eval"), {"__builtins__": {}}, {"result": values}))  # noqa: S307

    if holds(failure):
        return "Failed"
    return "Successful" if holds(success) else "Inconclusive"


def flagger_passes(result: list[dict[str, Any]], maximum: float) -> bool | None:
    """True or False, or None where Flagger halts with "no values found"."""
    value = float(result[-1]["value"][1]) if result else math.nan
    return None if math.isnan(value) else value <= maximum


def keda_value(result: list[dict[str, Any]]) -> float:
    assert len(result) <= 1, "KEDA refuses a query that returns several elements"
    value = float(result[0]["value"][1]) if result else 0.0
    return 0.0 if math.isnan(value) or math.isinf(value) else value


# --- the live service ----------------------------------------------------------------------

@dataclass
class Live:
    prometheus: PrometheusServer
    server: BentoServer
    cpu_files: dict[str, str]  # x86-cpu: the built iac/ and its renders for the other engines
    gpu_files: dict[str, str]
    gpu: InferenceReporter
    cpu_service: str
    gpu_service: str
    artifact: Path

    def value(self, promql: str) -> list[dict[str, Any]]:
        return self.prometheus.query(promql)

    def firing(self, service: str) -> set[str]:
        return {a["labels"]["alertname"] for a in self.prometheus.api("/api/v1/alerts")["alerts"]
                if a["state"] == "firing" and a["labels"].get("service_name") == service}


def iac_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in (root / "iac").rglob("*.yaml")}


def renders(ctx: RenderContext) -> dict[str, str]:
    files: dict[str, str] = {}
    for autoscaler, delivery in CHOICES:
        target = ctx.target.with_kubernetes(autoscaler=autoscaler, delivery=delivery)
        for path, text in render_iac(ctx.model_copy(update={"target": target})).items():
            files[f"{autoscaler}-{delivery}/{path}"] = text
    return files


def prometheus_rule_groups(files: dict[str, str]) -> list[dict[str, Any]]:
    """The groups of the PrometheusRule among `files`."""
    return next(doc for _, doc in documents(files) if doc["kind"] == "PrometheusRule")["spec"]["groups"]


def _predict(url: str, x: list[list[float]]) -> int:
    return httpx.post(f"{url}/predict", json={"inputs": {"x": x}}, timeout=30).status_code


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("delivery-live")
    hook = root / "slow_hook.py"
    hook.write_text(HOOK)
    artifact = build(BuildRequest(model=linear_model(root / "linear.onnx", features=4, outputs=3), target="x86-cpu",
                                  out=root / "out", name="linear", autoscaler="keda", delivery="argo-rollouts",
                                  variant="float",  # the optimizer is not under test here
                                  processing=ProcessingRequest(hook=hook)), Progress(quiet=True)).path
    cpu_ctx = RenderContext.from_manifest(Artifact.open(artifact).manifest)
    cpu_files = {**iac_files(artifact), **renders(cpu_ctx)}

    # A cuda-gpu artifact's agent.json and IaC (rendered, not built: no GPU build is needed).
    gpu_ctx = render_context("cuda-gpu", "linear", tag="0.1.0-gggggggggggg")
    gpu_files = renders(gpu_ctx)
    (root / "gpu-agent.json").write_text(render_group("agent", "agent", gpu_ctx)["agent/agent.json"])

    agent = AgentProcess(root / "agent", config_file=artifact / "agent" / "agent.json").start()
    gpu_agent = AgentProcess(root / "gpu-agent", config_file=root / "gpu-agent.json").start()
    prometheus = PrometheusServer(
        root / "prometheus", [f"127.0.0.1:{agent.port}", f"127.0.0.1:{gpu_agent.port}"],
        rule_files=[str(rules_firing_at_once(prometheus_rule_groups(cpu_files), root / "cpu-rules.json")),
                    str(rules_firing_at_once(prometheus_rule_groups(gpu_files), root / "gpu-rules.json"))],
    ).start()
    server = None
    try:
        server = BentoServer(artifact / "bento", root / "bentoml-home",
                             env={"MLPACK_AGENT_SOCKET": agent.socket, "MLPACK_AGENT_LINGER_S": "0.05"})
        os.environ["MLPACK_AGENT_SOCKET"] = gpu_agent.socket
        try:
            gpu = InferenceReporter({"model_name": "linear"}, [{"name": "y", "dtype": "float32", "shape": [None, 3]}])
        finally:
            del os.environ["MLPACK_AGENT_SOCKET"]
        yield Live(prometheus, server, cpu_files, gpu_files, gpu, cpu_ctx.artifact, gpu_ctx.artifact, artifact)
    finally:
        if server is not None:
            server.close()
        prometheus.stop()
        gpu_agent.stop()
        agent.stop()


def _count(live: Live, promql: str) -> float:
    result = live.value(promql)
    return float(result[0]["value"][1]) if result else -1.0


def _scraped(live: Live, counts: dict[str, int]) -> None:
    """Wait until Prometheus has counted each service's requests, then one more scrape (rate() needs two)."""
    for service, requests in counts.items():
        total = f'sum(mlpack_inference_requests_total{{service_name="{service}"}})'
        wait_for(lambda: _count(live, total) == requests, 30, interval_s=0.5,
                 what=f"{requests} requests of {service} in Prometheus")
    time.sleep(2.5)


def _judge(live: Live, files: dict[str, str]) -> dict[tuple[str, str, str], Any]:
    """Every query of `files` through its engine's reading: (file, kind, name) -> verdict or number."""
    verdicts: dict[tuple[str, str, str], Any] = {}
    for q in queries(files):
        result = live.value(q.promql)
        if q.kind == "AnalysisTemplate":
            verdict: Any = argo_phase(result, q.success, q.failure)
        elif q.kind == "MetricTemplate":
            verdict = flagger_passes(result, q.max)
        elif q.kind in ("ScaledObject", "InferenceService"):
            verdict = keda_value(result)
        else:  # an alert rule: its expression holds (a sample) or not (nothing)
            verdict = bool(result)
        verdicts[(q.file, q.kind, q.name)] = verdict
    return verdicts


def _by(verdicts: dict, kind: str, name: str | None = None) -> list[Any]:
    return [v for (_, k, n), v in verdicts.items() if k == kind and (name is None or n == name or n.startswith(name))]


# --- the checks, phase by phase (marked `phases`: they run in this order, even in random order) -----

def test_every_engine_file_holds_queries_of_the_objective(live: Live) -> None:
    for files in (live.cpu_files, live.gpu_files):
        kinds = {q.kind for q in queries(files)}
        assert kinds == {"PrometheusRule", "AnalysisTemplate", "MetricTemplate", "ScaledObject", "InferenceService"}
    gpu_checks = {q.name for q in queries(live.gpu_files) if q.kind == "MetricTemplate"}
    assert gpu_checks == {"error-ratio", "latency-p99", "off-accelerator"}


def test_a_new_replica_is_scraped_at_zero_before_its_first_request(live: Live) -> None:
    """The agent's request and error counters start at 0, so rate() counts the first requests
    (Prometheus sees no increase in a series that appears with its first value)."""
    for service in (live.cpu_service, live.gpu_service):
        for name in ("mlpack_inference_requests_total", "mlpack_inference_errors_total"):
            total = f'sum({name}{{service_name="{service}"}})'
            wait_for(lambda: _count(live, total) == 0, 30, interval_s=0.5, what=f"{name} of {service} at 0")


def test_healthy_load_passes_every_check_and_gives_keda_a_number(live: Live) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32).tolist()
    live.gpu.client.provider("CUDAExecutionProvider")
    arrays = {"x": np.ones((2, 4), np.float32)}

    def load(n: int) -> None:
        assert [_predict(live.server.url, x) for _ in range(n)] == [200] * n
        for _ in range(n):
            started = time.perf_counter() - 0.002  # a 2 ms request
            live.gpu.success(started, started, arrays, [np.ones((2, 3), np.float32)])
        live.gpu.client.flush()

    # Steady traffic, seen over more than one scrape: a latency histogram's series appear with
    # their first request, whose increase rate() cannot see.
    load(N_OK // 2)
    _scraped(live, {live.cpu_service: N_OK // 2, live.gpu_service: N_OK // 2})
    load(N_OK - N_OK // 2)
    _scraped(live, {live.cpu_service: N_OK, live.gpu_service: N_OK})

    for files, service in ((live.cpu_files, live.cpu_service), (live.gpu_files, live.gpu_service)):
        verdicts = _judge(live, files)
        assert set(_by(verdicts, "AnalysisTemplate")) == {"Successful"}, {k: v for k, v in verdicts.items() if v != "Successful" and k[1] == "AnalysisTemplate"}
        assert set(_by(verdicts, "MetricTemplate")) == {True}, verdicts
        load = _by(verdicts, "ScaledObject") + _by(verdicts, "InferenceService")
        assert load and all(math.isfinite(v) and v > 0 for v in load), verdicts  # requests in flight, on average
        assert _by(verdicts, "PrometheusRule", "MlpackHigh") == [False] * len(_by(verdicts, "PrometheusRule", "MlpackHigh"))
        assert not live.firing(service) & {"MlpackHighErrorRate", "MlpackHighLatency", "MlpackNotOnAccelerator"}


def test_injected_errors_fail_the_error_checks_and_fire_the_alert(live: Live) -> None:
    assert [_predict(live.server.url, [[1.0]]) for _ in range(N_BAD)] == [400] * N_BAD  # one column, not four
    _scraped(live, {live.cpu_service: N_OK + N_BAD})
    verdicts = _judge(live, live.cpu_files)
    assert set(_by(verdicts, "AnalysisTemplate", "error-ratio")) == {"Failed"}
    assert set(_by(verdicts, "MetricTemplate", "error-ratio")) == {False}
    assert set(_by(verdicts, "AnalysisTemplate", "latency")) == {"Successful"}  # bad requests are fast
    wait_for(lambda: "MlpackHighErrorRate" in live.firing(live.cpu_service), 20, interval_s=0.5,
             what="MlpackHighErrorRate to fire")


def test_injected_latency_fails_the_latency_checks_and_fires_the_alert(live: Live) -> None:
    slow = [[SLOW_MARKER, 0.0, 0.0, 0.0]]
    assert [_predict(live.server.url, slow) for _ in range(N_SLOW)] == [200] * N_SLOW
    _scraped(live, {live.cpu_service: N_OK + N_BAD + N_SLOW})
    verdicts = _judge(live, live.cpu_files)
    assert set(_by(verdicts, "AnalysisTemplate", "latency-p99")) == {"Failed"}
    assert set(_by(verdicts, "MetricTemplate", "latency-p99")) == {False}
    wait_for(lambda: "MlpackHighLatency" in live.firing(live.cpu_service), 20, interval_s=0.5,
             what="MlpackHighLatency to fire")


def test_a_gpu_service_on_the_cpu_fails_the_accelerator_check_and_fires_the_alert(live: Live) -> None:
    live.gpu.client.provider("CPUExecutionProvider")
    live.gpu.client.flush()
    off = f'mlpack_execution_provider_info{{service_name="{live.gpu_service}", execution_provider="CPUExecutionProvider"}}'
    wait_for(lambda: live.value(off), 20, interval_s=0.5, what="the CPU provider in Prometheus")
    verdicts = _judge(live, live.gpu_files)
    assert set(_by(verdicts, "AnalysisTemplate", "off-accelerator")) == {"Failed"}
    assert set(_by(verdicts, "MetricTemplate", "off-accelerator")) == {False}
    assert set(_by(verdicts, "AnalysisTemplate", "error-ratio")) == {"Successful"}
    wait_for(lambda: "MlpackNotOnAccelerator" in live.firing(live.gpu_service), 20, interval_s=0.5,
             what="MlpackNotOnAccelerator to fire")


def test_mlpack_iac_renders_the_choices_again_from_the_manifest(live: Live) -> None:
    """--autoscaler and --delivery are recorded in the manifest's target: `mlpack iac` keeps them."""
    before = iac_files(live.artifact)
    result = CliRunner().invoke(app, ["iac", str(live.artifact)])
    assert result.exit_code == 0, result.output
    assert iac_files(live.artifact) == before
    base = {p.name for p in (live.artifact / "iac" / "kubernetes" / "base").iterdir()}
    assert {"scaledobject.yaml", "rollout.yaml", "analysistemplate.yaml"} <= base and "hpa.yaml" not in base
    assert Artifact.open(live.artifact).problems() == []
