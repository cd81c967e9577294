"""Inference events in, OpenTelemetry instruments out.

Names below are the contract with the generated dashboard and alert rules; in
Prometheus they appear with units and `_total` appended, e.g. `mlpack.inference.duration`
(unit s) is `mlpack_inference_duration_seconds_bucket`. `PROMETHEUS_NAMES` lists them.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

log = logging.getLogger("mlpack_agent.events")

# Latency buckets in seconds: 0.5 ms to 10 s, dense where small models live.
LATENCY_BUCKETS_S = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
SIZE_BUCKETS_BYTES = [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]
NORM_BUCKETS = [0.01, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 1024]

# What each instrument is called once the Prometheus exporter has added units and suffixes.
PROMETHEUS_NAMES = {
    "requests": "mlpack_inference_requests_total",
    "errors": "mlpack_inference_errors_total",
    "model_duration": "mlpack_inference_model_duration_seconds",
    "duration": "mlpack_inference_duration_seconds",
    "batch_size": "mlpack_inference_batch_size",
    "input_size": "mlpack_inference_input_size_bytes",
    "predictions": "mlpack_inference_predictions_total",
    "output_norm": "mlpack_inference_output_norm",
    "events_received": "mlpack_agent_events_received_total",
    "datagrams_malformed": "mlpack_agent_datagrams_malformed_total",
    "client_dropped": "mlpack_agent_client_dropped_total",
    "buffer_size": "mlpack_agent_buffer_size_bytes",
    "buffer_dropped": "mlpack_agent_buffer_dropped_total",
}


# The service runtime's label names and the resource attributes they correspond to.
LABEL_ALIASES = {
    "model_name": "mlpack.model.name",
    "model_sha256": "mlpack.model.sha256",
    "model_variant": "mlpack.model.variant",
    "target": "mlpack.target",
    "mlpack_version": "mlpack.version",
    "artifact_digest": "mlpack.artifact.digest",
}


class InferenceMetrics:
    """Records batches of decoded events; one instance per agent."""

    def __init__(self, meter: Meter, max_label_values: int = 200) -> None:
        self.max_label_values = max_label_values
        self.requests = meter.create_counter(
            "mlpack.inference.requests", unit="{request}", description="Inference requests served"
        )
        self.errors = meter.create_counter(
            "mlpack.inference.errors", unit="{request}", description="Failed inference requests, by error.kind"
        )
        self.model_duration = meter.create_histogram(
            "mlpack.inference.model.duration", unit="s", description="Time spent running the model",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.duration = meter.create_histogram(
            "mlpack.inference.duration", unit="s", description="Time to answer a request, end to end",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.batch_size = meter.create_histogram(
            "mlpack.inference.batch.size", unit="{item}", description="Items per request",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        self.input_size = meter.create_histogram(
            "mlpack.inference.input.size", unit="By", description="Request input size",
            explicit_bucket_boundaries_advisory=SIZE_BUCKETS_BYTES,
        )
        self.predictions = meter.create_counter(
            "mlpack.inference.predictions", unit="{item}", description="Predicted classes, by class"
        )
        self.output_norm = meter.create_histogram(
            "mlpack.inference.output.norm", unit="1", description="L2 norm of outputs (embeddings)",
            explicit_bucket_boundaries_advisory=NORM_BUCKETS,
        )
        self.events_received = meter.create_counter(
            "mlpack.agent.events.received", unit="{event}", description="Events the agent decoded"
        )
        self.malformed = meter.create_counter(
            "mlpack.agent.datagrams.malformed", unit="{datagram}", description="Datagrams that could not be decoded"
        )
        # The latest running drop count each client (process) reported.
        self.client_dropped: dict[int, int] = {}
        meter.create_observable_counter(
            "mlpack.agent.client.dropped", callbacks=[self._observe_client_dropped], unit="{event}",
            description="Events services could not hand to the agent (agent down or busy)",
        )
        self._seen: dict[str, set[str]] = {"error.kind": set(), "class": set()}
        self._attr_cache: dict[str, dict[str, str]] = {}

    def _observe_client_dropped(self, options: CallbackOptions):
        yield Observation(sum(self.client_dropped.values()))

    def _bounded(self, key: str, value: Any) -> str:
        """Keep attribute cardinality bounded: past the cap, new values become "other"."""
        text = str(value)
        seen = self._seen[key]
        if text in seen:
            return text
        if len(seen) < self.max_label_values:
            seen.add(text)
            return text
        return "other"

    def record(self, datagram: dict[str, Any], resource: dict[str, str]) -> int:
        """Record one decoded datagram; returns the number of events in it."""
        events = datagram["events"]
        # None, not {}: the SDK's fast path when a measurement has no attributes.
        attrs = self._attributes(datagram.get("labels") or {}, resource) or None
        pid = datagram.get("pid")
        if isinstance(pid, int):
            self.client_dropped[pid] = int(datagram.get("dropped") or 0)
        errors: Tally[str] = Tally()
        classes: Tally[Any] = Tally()
        model_h, total_h = self.model_duration.record, self.duration.record
        batch_h, input_h, norm_h = self.batch_size.record, self.input_size.record, self.output_norm.record
        for model_ms, total_ms, batch_size, input_bytes, ok, error_kind, predicted, norm in events:
            if total_ms is not None:
                total_h(total_ms / 1000.0, attrs)
            if not ok:  # a failed request has no model time or batch worth a histogram
                errors[error_kind or "unknown"] += 1
                continue
            if model_ms is not None:
                model_h(model_ms / 1000.0, attrs)
            batch_h(batch_size, attrs)
            input_h(input_bytes, attrs)
            if predicted:
                classes.update(predicted)
            if norm is not None:
                norm_h(norm, attrs)
        # Counters are summed per datagram: one SDK call instead of one per event.
        n = len(events)
        self.requests.add(n, attrs)
        self.events_received.add(n)
        for kind, count in errors.items():
            self.errors.add(count, {**(attrs or {}), "error.kind": self._bounded("error.kind", kind)})
            log.warning("inference errors", extra={"error.kind": kind, "count": count, **(attrs or {})})
        for cls, count in classes.items():
            self.predictions.add(count, {**(attrs or {}), "class": self._bounded("class", cls)})
        return n

    def _attributes(self, labels: dict[str, str], resource: dict[str, str]) -> dict[str, str]:
        """Client labels that the resource does not already say become metric attributes.

        Normally the client's labels (model, version, target, digest) equal the agent's
        resource attributes, so measurements carry no attributes: the cheapest path.
        """
        key = repr(sorted(labels.items()))
        cached = self._attr_cache.get(key)
        if cached is None:
            named = {LABEL_ALIASES.get(k, k): str(v) for k, v in labels.items()}
            cached = {k: v for k, v in named.items() if resource.get(k) != v}
            if len(self._attr_cache) < 1000:
                self._attr_cache[key] = cached
        return cached
