"""Ansible filter used by the rollout's health gate: read the mlpack agent's Prometheus text.

Runs on the control node (where mlpack and prometheus_client are installed). The metric
and label names are the agent's contract (`mlpack_agent.metrics.PROMETHEUS_NAMES`; the
agent copies `service.version` and `mlpack.*` resource attributes onto every series).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "mlpack_inference_requests_total"
ERRORS = "mlpack_inference_errors_total"


def successful_inferences(text: str, version: str, sha256: str = "") -> float:
    """Requests minus errors the agent counted for `version` (and `sha256`, if given)."""
    requests = errors = 0.0
    for family in text_string_to_metric_families(str(text or "")):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("service_version") != version:
                continue
            if sha256 and labels.get("mlpack_model_sha256") != sha256:
                continue
            if sample.name == REQUESTS:
                requests += sample.value
            elif sample.name == ERRORS:
                errors += sample.value
    return requests - errors


class FilterModule:
    def filters(self):
        return {"mlpack_successful_inferences": successful_inferences}
