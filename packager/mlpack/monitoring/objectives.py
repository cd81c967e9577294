"""The artifact's service-level objective as PromQL, written once.

Each indicator of the target's `[slo]` is one query over the agent's metrics and one upper
bound: the service meets it while the query's value is at most `max`. Every check that
judges the service uses these very strings: the alert rules (agent/alerts.yaml and the
PrometheusRule: `QUERY > MAX`), the Argo Rollouts AnalysisTemplate (`result[0] <= MAX`), the
Flagger MetricTemplates (`thresholdRange.max`). Only the label selector differs: alerts
watch every version of the service, canary checks the version being rolled out.

Each query returns one value: 0 rather than nothing where no series exist yet (no error
counted, no replica off the accelerator), NaN where nothing can be judged (no request in
the window), which Argo Rollouts reads as inconclusive and Flagger as "no values found":
neither promotes a version without traffic. PURE.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..targets import Slo

# The agent's names for them in Prometheus (mlpack_agent.metrics.PROMETHEUS_NAMES, which an
# installed mlpack may not import: tests/test_objectives.py checks that they agree).
REQUESTS = "mlpack_inference_requests_total"
ERRORS = "mlpack_inference_errors_total"
DURATION = "mlpack_inference_duration_seconds"
PROVIDER = "mlpack_execution_provider_info"
# KEDA's window: short, so that the replica count follows the load within a minute or two.
LOAD_WINDOW = "1m"


@dataclass(frozen=True)
class Indicator:
    name: str  # a DNS label: Argo metric and Flagger MetricTemplate names
    alert: str  # the alert rule that fires while the objective is missed
    query: str  # PromQL: one value
    max: float  # the objective is met while the value is at most this
    hold: str  # the alert's `for:`
    severity: str
    summary: str  # what a missed objective means, for people
    description: str  # the alert's description: a Prometheus template of its value

    @property
    def alert_expression(self) -> str:
        return f"({self.query}) > {number(self.max)}"

    @property
    def success_condition(self) -> str:
        """Argo Rollouts' successCondition (expr-lang); with failure_condition, NaN meets neither: inconclusive."""
        return f"result[0] <= {number(self.max)}"

    @property
    def failure_condition(self) -> str:
        return f"result[0] > {number(self.max)}"


def number(value: float) -> str:
    """A number as PromQL, expr-lang and people read it: its shortest exact form, no ".0"."""
    text = repr(float(value))
    return text.removesuffix(".0")


def indicators(slo: Slo, selector: str, accelerator: str | None) -> tuple[Indicator, ...]:
    """The objective's indicators for the series `selector` matches; `accelerator` is the
    execution provider a GPU target must run on (None for CPU targets)."""
    w = slo.window
    q = number(slo.latency_quantile)
    p = "p" + number(round(slo.latency_quantile * 100, 6)).replace(".", "-")
    value = "{{ $value | %s }}"
    found = [
        Indicator(
            name="error-ratio", alert="MlpackHighErrorRate",
            query=f"(sum(rate({ERRORS}{{{selector}}}[{w}])) or vector(0)) / sum(rate({REQUESTS}{{{selector}}}[{w}]))",
            max=slo.error_ratio, hold="5m", severity="warning",
            summary=f"more than {number(round(slo.error_ratio * 100, 6))}% of requests fail",
            description=f"Error ratio over {w}: {value % 'humanizePercentage'} (objective: at most "
                        f"{number(slo.error_ratio)}); see {ERRORS} by error_kind.",
        ),
        Indicator(
            name=f"latency-{p}", alert="MlpackHighLatency",
            query=f"histogram_quantile({q}, sum by (le) (rate({DURATION}_bucket{{{selector}}}[{w}])))",
            max=slo.latency_s, hold="10m", severity="warning",
            summary=f"{p} latency is above {number(slo.latency_s)} s",
            description=f"{p} end-to-end latency over {w}: {value % 'humanizeDuration'} (objective: at most "
                        f"{number(slo.latency_s)} s).",
        ),
    ]
    if accelerator and slo.on_accelerator:
        found.append(Indicator(
            name="off-accelerator", alert="MlpackNotOnAccelerator",
            query=f'count({PROVIDER}{{{selector}, execution_provider!="{accelerator}"}}) or vector(0)',
            max=0, hold="1m", severity="critical",
            summary=f"replicas serve on another execution provider than {accelerator}",
            description="{{ $value }} replicas report another provider: the GPU provider did not load there and the "
                        "service was started with MLPACK_ALLOW_CPU=1 (docs/serving.md, GPU targets): it serves on "
                        "the CPU, far slower.",
        ))
    return tuple(found)


def in_flight(selector: str) -> str:
    """Requests in flight across the service, on average over the last minute: the seconds of
    request time served per second (Little's law), from the agent's latency histogram. 0, not
    nothing, when no replica reports (KEDA reads an empty answer as 0 too)."""
    return f"sum(rate({DURATION}_sum{{{selector}}}[{LOAD_WINDOW}])) or vector(0)"
