"""One service-level objective per artifact ([slo] of the target, `mlpack build --slo`), and
what the autoscaler and delivery choices write: the rendered files, read back as data.

That the queries mean what they say is checked against a served artifact's live metrics in
tests/test_delivery_prometheus.py; the schemas in tests/test_delivery_iac.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import InputError, MlpackError
from mlpack.render.iac import render_iac
from mlpack.monitoring.objectives import DURATION, ERRORS, PROVIDER, REQUESTS
from mlpack.render.context import RenderContext
from mlpack.render.templates import render_artifact
from mlpack.targets import Kubernetes, load_target, target_files
from mlpack_agent.metrics import PROMETHEUS_NAMES

from .manifests import KUBERNETES_TARGETS, fixed_context

GPU_TARGETS = [t for t in KUBERNETES_TARGETS if load_target(t).is_gpu]


def chosen(target: str, autoscaler: str = "hpa", delivery: str = "none", **kubernetes: Any) -> RenderContext:
    ctx = fixed_context(target)
    return ctx.model_copy(update={"target": ctx.target.with_kubernetes(autoscaler=autoscaler, delivery=delivery,
                                                                       **kubernetes)})


def docs(files: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [d for path, text in sorted(files.items()) if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == kind]


def one(files: dict[str, str], kind: str, folder: str = "iac/kubernetes/") -> dict[str, Any]:
    found = docs({p: t for p, t in files.items() if p.startswith(folder)}, kind)
    assert len(found) == 1, f"{len(found)} {kind} under {folder}"
    return found[0]


def test_the_objective_names_the_agents_metrics() -> None:
    assert (REQUESTS, ERRORS, PROVIDER) == (PROMETHEUS_NAMES["requests"], PROMETHEUS_NAMES["errors"],
                                            PROMETHEUS_NAMES["execution_provider"])
    assert DURATION == PROMETHEUS_NAMES["duration"]


@pytest.mark.parametrize("target", sorted(target_files()))
def test_every_target_declares_its_objective(target: str) -> None:
    text = Path(__file__).parents[1].joinpath("targets", f"{target}.toml").read_text()
    assert "\n[slo]\n" in text, "declare the objective in the target file, not by default"


@pytest.mark.parametrize("target", KUBERNETES_TARGETS)
def test_canary_checks_are_the_alerts_queries_on_this_version_only(target: str) -> None:
    argo = render_iac(chosen(target, "keda", "argo-rollouts"))
    flagger = render_iac(chosen(target, "keda", "flagger"))
    tag = fixed_context(target).image.tag
    service = f'service_name="golden-model-{target}"'
    rules = {r["alert"]: r for r in one(argo, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    analysis = one(argo, "AnalysisTemplate")["spec"]["metrics"]
    templates = {d["metadata"]["name"]: d["spec"]["query"] for d in docs(flagger, "MetricTemplate")}
    canary = {m["name"]: m["thresholdRange"]["max"] for m in one(flagger, "Canary")["spec"]["analysis"]["metrics"]}
    alert_of = {"error-ratio": "MlpackHighErrorRate", "latency-p99": "MlpackHighLatency",
                "off-accelerator": "MlpackNotOnAccelerator"}
    assert [m["name"] for m in analysis] == list(templates) == list(canary)
    assert set(canary) == {"error-ratio", "latency-p99"} | ({"off-accelerator"} if target in GPU_TARGETS else set())
    for metric in analysis:
        query, bound = metric["provider"]["prometheus"]["query"], canary[metric["name"]]
        assert templates[metric["name"]] == query
        assert query.count(f'{service}, service_version="{tag}"') == query.count(service) >= 1
        rule = rules[alert_of[metric["name"]]]
        every_version = query.replace(f', service_version="{tag}"', "")
        assert rule["expr"] == f"({every_version}) > {bound:g}"
        assert metric["successCondition"] == f"result[0] <= {bound:g}"
        assert metric["failureCondition"] == f"result[0] > {bound:g}"


def test_slo_overrides_at_build_reach_alerts_and_checks() -> None:
    ctx = chosen("cuda-gpu", "hpa", "argo-rollouts")
    target = ctx.target.with_slo(error_ratio="0.001", latency_quantile="0.95", latency_s="0.25", window="10m",
                                 on_accelerator="false")
    files = render_iac(ctx.model_copy(update={"target": target}))
    metrics = {m["name"]: m for m in one(files, "AnalysisTemplate")["spec"]["metrics"]}
    assert set(metrics) == {"error-ratio", "latency-p95"}  # off the accelerator no longer judged
    assert metrics["error-ratio"]["failureCondition"] == "result[0] > 0.001"
    assert "[10m]" in metrics["latency-p95"]["provider"]["prometheus"]["query"]
    assert metrics["latency-p95"]["provider"]["prometheus"]["query"].startswith("histogram_quantile(0.95,")
    rules = {r["alert"]: r for r in one(files, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert rules["MlpackHighLatency"]["expr"].endswith("> 0.25") and "MlpackNotOnAccelerator" not in rules


@pytest.mark.parametrize(("item", "line"), [
    ("latency_s=-1", "error: --slo latency_s: Input should be greater than 0"),
    ("latency_s", "error: --slo 'latency_s' is not KEY=VALUE; e.g. --slo latency_s=0.25"),
    ("p95=0.2", "error: --slo 'p95' is not a key it knows; its keys are error_ratio, latency_quantile, "),
    ("window=5 minutes", "error: --slo window: String should match pattern"),
])
def test_a_bad_slo_is_one_line_and_writes_nothing(linear_onnx: Path, tmp_path: Path, item: str, line: str) -> None:
    result = CliRunner().invoke(app, ["build", str(linear_onnx), "-t", "x86-cpu", "-o", str(tmp_path / "out"),
                                      "--slo", item])
    assert result.exit_code != 0
    assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "line"), [
    (["-t", "aws-lambda", "--delivery", "flagger"],
     "error: --delivery applies to targets with Kubernetes manifests; target aws-lambda has none"),
    (["-t", "x86-cpu", "--delivery", "spinnaker"],
     "error: --delivery: delivery 'spinnaker' is not one of none, argo-rollouts, flagger"),
    (["-t", "x86-cpu", "--autoscaler", "vpa"], "error: --autoscaler: autoscaler 'vpa' is not one of hpa, keda"),
])
def test_a_bad_choice_is_one_line(linear_onnx: Path, tmp_path: Path, args: list[str], line: str) -> None:
    result = CliRunner().invoke(app, ["build", str(linear_onnx), "-o", str(tmp_path / "out"), *args])
    assert result.exit_code != 0
    assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_keda_scales_the_workload_the_engine_runs_on_requests_in_flight() -> None:
    for delivery, kind in (("none", "Deployment"), ("argo-rollouts", "Rollout"), ("flagger", "Deployment")):
        files = render_iac(chosen("x86-cpu", "keda", delivery))
        scaled = one(files, "ScaledObject")["spec"]
        assert scaled["scaleTargetRef"]["kind"] == kind
        assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 10)  # no cold starts allowed
        (trigger,) = scaled["triggers"]
        serving = load_target("x86-cpu").serving
        assert float(trigger["metadata"]["threshold"]) == serving.workers * serving.max_concurrency / 2
        assert float(trigger["metadata"]["activationThreshold"]) == 0.5
        assert "mlpack_inference_duration_seconds_sum" in trigger["metadata"]["query"]
        assert not docs(files, "HorizontalPodAutoscaler")  # one autoscaler or the other


def test_scale_to_zero_only_with_a_signal_that_can_wake_the_service() -> None:
    with pytest.raises(ValueError, match="scale_to_zero needs autoscaler"):
        Kubernetes(autoscaler="keda", scale_to_zero=True)
    with pytest.raises(InputError, match="scale_to_zero needs"):
        load_target("x86-cpu").with_kubernetes(scale_to_zero=True)
    wake = 'sum(rate(nginx_ingress_controller_requests{service="m"}[1m])) * 0.05'
    files = render_iac(chosen("x86-cpu", "keda", "none", scale_to_zero=True, wake_query=wake))
    scaled = one(files, "ScaledObject")["spec"]
    assert scaled["minReplicaCount"] == 0 and "cooldownPeriod" in scaled
    assert [t["name"] for t in scaled["triggers"]] == ["in-flight", "wake"]
    assert scaled["triggers"][1]["metadata"]["query"] == wake
    # KServe's own KEDA scaler has no wake-up signal: it keeps one replica.
    assert one(files, "InferenceService", "iac/kserve/")["spec"]["predictor"]["minReplicas"] >= 1


def test_argo_rollouts_runs_the_deployments_pods_in_canary_steps() -> None:
    files = render_iac(chosen("x86-cpu", "hpa", "argo-rollouts"))
    assert one(files, "Deployment")["spec"]["replicas"] == 0
    rollout = one(files, "Rollout")["spec"]
    assert rollout["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "golden-model-x86-cpu",
                                      "scaleDown": "progressively"}
    steps = rollout["strategy"]["canary"]["steps"]
    assert [s["setWeight"] for s in steps if "setWeight" in s] == load_target("x86-cpu").kubernetes.canary_weights
    assert rollout["strategy"]["canary"]["analysis"]["templates"] == [{"templateName": "golden-model-x86-cpu"}]
    assert one(files, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    staging = yaml.safe_load(files["iac/kubernetes/overlays/staging/kustomization.yaml"])
    assert [p["target"]["kind"] for p in staging["patches"]] == ["HorizontalPodAutoscaler"]  # the Deployment stays at 0


def test_flagger_shifts_traffic_and_copies_the_autoscaler() -> None:
    files = render_iac(chosen("cuda-gpu", "keda", "flagger"))
    canary = one(files, "Canary")["spec"]
    assert canary["targetRef"]["kind"] == "Deployment"
    assert canary["autoscalerRef"] == {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                       "name": "golden-model-cuda-gpu"}
    assert canary["provider"] == "gatewayapi:v1" and canary["service"]["gatewayRefs"] == [
        {"name": "mlpack", "namespace": "gateway"}]
    assert canary["analysis"]["stepWeights"] == [10, 25, 50] and canary["analysis"]["threshold"] == 2
    # Flagger renames app.kubernetes.io/name on its primary: policies select the instance label.
    for kind in ("NetworkPolicy", "PodDisruptionBudget"):
        selector = one(files, kind)["spec"]["podSelector" if kind == "NetworkPolicy" else "selector"]
        assert selector == {"matchLabels": {"app.kubernetes.io/instance": "golden-model-cuda-gpu"}}
    assert one(files, "PodMonitor")["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "golden-model-cuda-gpu"}}


@pytest.mark.parametrize("target", KUBERNETES_TARGETS)
def test_kserve_serves_the_open_inference_protocol_with_the_agent_beside_it(target: str) -> None:
    files = render_iac(chosen(target, "keda"))
    service = one(files, "InferenceService", "iac/kserve/")
    annotations = service["metadata"]["annotations"]
    assert annotations == {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "keda"}
    predictor = service["spec"]["predictor"]
    model, agent = predictor["containers"]
    assert model["name"] == "kserve-container" and {"name": "PROTOCOL", "value": "v2"} in model["env"]
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert model["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert model["ports"][0]["containerPort"] == load_target(target).serving.port
    assert agent["command"][:3] == ["python3", "-m", "mlpack_agent.main"]
    assert predictor["labels"]["app.kubernetes.io/instance"] == f"golden-model-{target}"  # PodMonitor, policies
    (metric,) = predictor["autoScaling"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["backend"] == "prometheus"
    k8s = load_target(target).kubernetes
    if k8s.gpus:
        assert model["resources"]["limits"]["nvidia.com/gpu"] == k8s.gpus
        assert predictor["nodeSelector"]["nvidia.com/gpu.present"] == "true" and predictor["tolerations"]
    else:
        assert "nvidia.com/gpu" not in model["resources"]["limits"]


def test_a_manifest_from_an_mlpack_without_the_engine_is_refused_in_one_line() -> None:
    ctx = fixed_context("x86-cpu")
    snapshot = ctx.target.model_dump()
    snapshot["kubernetes"]["delivery"] = "spinnaker"
    from mlpack.targets import Target

    target = Target.model_validate(snapshot, context={"snapshot": True})
    with pytest.raises(MlpackError, match="delivery 'spinnaker' is not one of none, argo-rollouts, flagger"):
        render_artifact(ctx.model_copy(update={"target": target}))
