"""Every generated alert fires on the series that mean trouble and stays silent on healthy ones.

`promtool test rules` evaluates the rendered rules (the cuda-gpu artifact's with a drift
profile, which hold every alert; a CPU target's hold all but MlpackNotOnAccelerator, an
artifact without a profile none of the drift alerts) on synthetic series with the
metric names and labels the agent exports (tests/test_agent_templates.py checks those names
against a running agent). A wrong threshold, selector, `for:` or label breaks a case here.
The objective's alerts (errors, latency, accelerator: cuda-gpu's [slo]) judge the service as
a whole, the agent's alerts each instance; tests/test_delivery_prometheus.py evaluates the
same rules on a served artifact's live metrics.
Annotations are text for people: they are dropped from the copy promtool tests, because
promtool compares them exactly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .agent_files import render_agent_files

SERVICE = 'service_name="digits-cuda-gpu"'
OTHER = 'service_name="another-model"'  # the selector must keep other artifacts' series out
pytestmark = pytest.mark.requires_tool("promtool", hint="apt-get install prometheus")


# The alerts of the service-level objective aggregate every instance: their labels name no instance.
OBJECTIVE = {"MlpackHighErrorRate", "MlpackHighLatency", "MlpackNotOnAccelerator"}


def case(alert: str, series: dict[str, str], at: str, fires: bool) -> dict:
    instance = {} if alert in OBJECTIVE else {"instance": "a"}
    expected = [{"exp_labels": {"severity": SEVERITY[alert], "service_name": "digits-cuda-gpu",
                                **instance}}] if fires else []
    return {"interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}


SEVERITY = {"MlpackHighErrorRate": "warning", "MlpackHighLatency": "warning", "MlpackAgentBufferGrowing": "warning",
            "MlpackAgentDroppingData": "warning", "MlpackAgentDown": "critical", "MlpackNotOnAccelerator": "critical",
            "MlpackInputDrift": "warning", "MlpackOutputDrift": "warning", "MlpackInputsOutOfRange": "warning"}


def drift(name: str, source: str, values: dict[str, str]) -> dict[str, str]:
    """Per-feature drift gauges: `values` by feature."""
    return {f'{name}{{{SERVICE}, instance="a", feature="{feature}", source="{source}"}}': v
            for feature, v in values.items()}


def latency(le_0_1: str, le_0_5: str, le_1: str, total: str) -> dict[str, str]:
    name = "mlpack_inference_duration_seconds_bucket"
    return {f'{name}{{{SERVICE}, instance="a", le="0.1"}}': le_0_1,
            f'{name}{{{SERVICE}, instance="a", le="0.5"}}': le_0_5,
            f'{name}{{{SERVICE}, instance="a", le="1"}}': le_1,
            f'{name}{{{SERVICE}, instance="a", le="+Inf"}}': total}


CASES = {
    "errors: 10% fail for 5 minutes": case("MlpackHighErrorRate", {
        f'mlpack_inference_requests_total{{{SERVICE}, instance="a"}}': "0+100x20",
        f'mlpack_inference_errors_total{{{SERVICE}, instance="a", error_kind="model_error"}}': "0+10x20"},
        "15m", fires=True),
    "errors: 1% fail": case("MlpackHighErrorRate", {
        f'mlpack_inference_requests_total{{{SERVICE}, instance="a"}}': "0+100x20",
        f'mlpack_inference_errors_total{{{SERVICE}, instance="a", error_kind="model_error"}}': "0+1x20"},
        "15m", fires=False),
    "errors: another artifact's": case("MlpackHighErrorRate", {
        f'mlpack_inference_requests_total{{{OTHER}, instance="a"}}': "0+100x20",
        f'mlpack_inference_errors_total{{{OTHER}, instance="a", error_kind="model_error"}}': "0+50x20"},
        "15m", fires=False),
    "errors: 3% fail, over cuda-gpu's 2% objective": case("MlpackHighErrorRate", {
        f'mlpack_inference_requests_total{{{SERVICE}, instance="a"}}': "0+100x20",
        f'mlpack_inference_errors_total{{{SERVICE}, instance="a", error_kind="bad_request"}}': "0+3x20"},
        "15m", fires=True),
    "errors: none ever counted (no error series)": case("MlpackHighErrorRate", {
        f'mlpack_inference_requests_total{{{SERVICE}, instance="a"}}': "0+100x20"}, "15m", fires=False),
    "latency: p99 between 0.5 and 1 s for 10 minutes": case(
        "MlpackHighLatency", latency("0+0x30", "0+0x30", "0+100x30", "0+100x30"), "25m", fires=True),
    "latency: every request under 0.1 s": case(
        "MlpackHighLatency", latency("0+100x30", "0+100x30", "0+100x30", "0+100x30"), "25m", fires=False),
    "latency: 1% slow is within the p99 objective": case(
        "MlpackHighLatency", latency("0+99x30", "0+99x30", "0+100x30", "0+100x30"), "25m", fires=False),
    "buffer: growing past 1 MiB for 15 minutes": case("MlpackAgentBufferGrowing", {
        f'mlpack_agent_buffer_size_bytes{{{SERVICE}, instance="a"}}': "2000000+10000x40"}, "35m", fires=True),
    "buffer: large but steady": case("MlpackAgentBufferGrowing", {
        f'mlpack_agent_buffer_size_bytes{{{SERVICE}, instance="a"}}': "2000000x40"}, "35m", fires=False),
    "dropping: the buffer drops data": case("MlpackAgentDroppingData", {
        f'mlpack_agent_buffer_dropped_total{{{SERVICE}, instance="a"}}': "0+5x20",
        f'mlpack_agent_client_dropped_total{{{SERVICE}, instance="a"}}': "0x20"}, "10m", fires=True),
    "dropping: nothing dropped": case("MlpackAgentDroppingData", {
        f'mlpack_agent_buffer_dropped_total{{{SERVICE}, instance="a"}}': "0x20",
        f'mlpack_agent_client_dropped_total{{{SERVICE}, instance="a"}}': "0x20"}, "10m", fires=False),
    "agent down: scraped, then gone for 10 minutes": case("MlpackAgentDown", {
        f'target_info{{{SERVICE}, instance="a"}}': "1x10 _x20",
        f'target_info{{{SERVICE}, instance="b"}}': "1x30"}, "25m", fires=True),  # 5 m stale, then 5 m pending
    "agent down: answering all along": case("MlpackAgentDown", {
        f'target_info{{{SERVICE}, instance="a"}}': "1x30"}, "25m", fires=False),
    "accelerator: serving on the CPU": case("MlpackNotOnAccelerator", {
        f'mlpack_execution_provider_info{{{SERVICE}, instance="a", execution_provider="CPUExecutionProvider"}}': "1x10"},
        "5m", fires=True),
    "accelerator: on CUDA": case("MlpackNotOnAccelerator", {
        f'mlpack_execution_provider_info{{{SERVICE}, instance="a", execution_provider="CUDAExecutionProvider"}}': "1x10"},
        "5m", fires=False),
    # The agent scores a sliding window; one feature above 0.25 for the target's 15 minutes fires.
    "input drift: one feature above the threshold for 20 minutes": case("MlpackInputDrift", drift(
        "mlpack_drift_psi", "input", {"pixels[3]": "0.05x25", "pixels[4]": "0.05x4 0.6x20"}), "25m", fires=True),
    "input drift: a spike shorter than sustained": case("MlpackInputDrift", drift(
        "mlpack_drift_psi", "input", {"pixels[3]": "0.05x15 0.9x5 0.05x5"}), "25m", fires=False),
    "input drift: only the outputs drift": case("MlpackInputDrift", drift(
        "mlpack_drift_psi", "output", {"label": "0.9x25"}), "25m", fires=False),
    "output drift: the class mix moved": case("MlpackOutputDrift", drift(
        "mlpack_drift_psi", "output", {"label": "0.4x25", "probabilities:max": "0.1x25"}), "25m", fires=True),
    "output drift: below the threshold": case("MlpackOutputDrift", drift(
        "mlpack_drift_psi", "output", {"label": "0.2x25"}), "25m", fires=False),
    "out of range: a tenth of the rows for 20 minutes": case("MlpackInputsOutOfRange", {
        f'mlpack_drift_inputs_out_of_range_ratio{{{SERVICE}, instance="a"}}': "0.1x25"}, "25m", fires=True),
    "out of range: 1% of the rows": case("MlpackInputsOutOfRange", {
        f'mlpack_drift_inputs_out_of_range_ratio{{{SERVICE}, instance="a"}}': "0.01x25"}, "25m", fires=False),
}


def rules_without_annotations(target_name: str) -> dict:
    rules = yaml.safe_load(render_agent_files(target_name, drift=True)["alerts.yaml"])
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return rules


def test_every_generated_alert_has_a_firing_and_a_silent_case() -> None:
    alerts = {r["alert"] for r in rules_without_annotations("cuda-gpu")["groups"][0]["rules"]}
    cased = {c["alert_rule_test"][0]["alertname"]: [] for c in CASES.values()}
    for c in CASES.values():
        cased[c["alert_rule_test"][0]["alertname"]].append(bool(c["alert_rule_test"][0]["exp_alerts"]))
    assert set(cased) == alerts
    assert all(set(kinds) == {True, False} for kinds in cased.values()), cased


@pytest.mark.parametrize("name", CASES)
def test_alert_rule(name: str, tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules_without_annotations("cuda-gpu")))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": [CASES[name]]}))
    done = subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
