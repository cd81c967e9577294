"""Every generated alert fires on the series that mean trouble and stays silent on healthy ones.

`promtool test rules` evaluates the rendered rules (the cuda-gpu artifact's, which hold every
alert; a CPU target's hold all but MlpackNotOnAccelerator) on synthetic series with the
metric names and labels the agent exports (tests/test_agent_templates.py checks those names
against a running agent). A wrong threshold, selector, `for:` or label breaks a case here.
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


def case(alert: str, series: dict[str, str], at: str, fires: bool, labels: dict[str, str] | None = None) -> dict:
    expected = [{"exp_labels": {"severity": SEVERITY[alert], "service_name": "digits-cuda-gpu", "instance": "a",
                                **(labels or {})}}] if fires else []
    return {"interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}


SEVERITY = {"MlpackHighErrorRate": "warning", "MlpackHighLatencyP95": "warning", "MlpackAgentBufferGrowing": "warning",
            "MlpackAgentDroppingData": "warning", "MlpackAgentDown": "critical", "MlpackNotOnAccelerator": "critical"}


def latency(le_0_1: str, le_0_5: str, total: str) -> dict[str, str]:
    name = "mlpack_inference_duration_seconds_bucket"
    return {f'{name}{{{SERVICE}, instance="a", le="0.1"}}': le_0_1,
            f'{name}{{{SERVICE}, instance="a", le="0.5"}}': le_0_5,
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
    "latency: p95 near 0.5 s for 10 minutes": case("MlpackHighLatencyP95", latency("0+0x30", "0+100x30", "0+100x30"),
                                                  "25m", fires=True),
    "latency: every request under 0.1 s": case("MlpackHighLatencyP95", latency("0+100x30", "0+100x30", "0+100x30"),
                                               "25m", fires=False),
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
        "5m", fires=True, labels={"execution_provider": "CPUExecutionProvider"}),
    "accelerator: on CUDA": case("MlpackNotOnAccelerator", {
        f'mlpack_execution_provider_info{{{SERVICE}, instance="a", execution_provider="CUDAExecutionProvider"}}': "1x10"},
        "5m", fires=False),
}


def rules_without_annotations(target_name: str) -> dict:
    rules = yaml.safe_load(render_agent_files(target_name)["alerts.yaml"])
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
