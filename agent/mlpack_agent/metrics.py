"""Inference events in, OpenTelemetry instruments out.

Names below are the contract with the generated dashboard and alert rules; in
Prometheus they appear with units and `_total` appended, e.g. `mlpack.inference.duration`
(unit s) is `mlpack_inference_duration_seconds_bucket`. `PROMETHEUS_NAMES` lists them.

Only checked events arrive here (validate.py), and every series is bounded: measurements
carry no attributes of their own (the resource, from the agent's configuration, labels
them), error kinds and classes keep `limits.label_values` distinct values each and fold
the rest into "other"; drift scores are labelled with the features the configuration's
profile names (drift.py). What the agent refused is counted in one counter, by reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .config import CaptureConfig, DriftConfig, LimitsConfig
from .validate import Checked

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
    "execution_provider": "mlpack_execution_provider_info",
    "events_received": "mlpack_agent_events_received_total",
    "refused": "mlpack_agent_refused_total",
    "client_dropped": "mlpack_agent_client_dropped_total",
    "buffer_size": "mlpack_agent_buffer_size_bytes",
    "buffer_dropped": "mlpack_agent_buffer_dropped_total",
}
# Exported when the agent's configuration has a drift profile (and, for captured, a capture folder).
DRIFT_PROMETHEUS_NAMES = {
    "psi": "mlpack_drift_psi",
    "js_distance": "mlpack_drift_js_distance",
    "out_of_range": "mlpack_drift_out_of_range_ratio",
    "inputs_out_of_range": "mlpack_drift_inputs_out_of_range_ratio",
    "window_rows": "mlpack_drift_window_rows",
    "rows": "mlpack_drift_rows_total",
    "captured": "mlpack_agent_captured_total",
}

# The reasons of mlpack_agent_refused_total: what was refused, and why.
REFUSED_SENDER = "sender"  # a datagram from another user (or pid namespace): trust.py
REFUSED_MALFORMED = "malformed"  # a datagram that is not the protocol's (or too large)
REFUSED_EVENT = "invalid_event"  # an event with a value out of range
REFUSED_FIELD = "invalid_field"  # a datagram's pid, dropped or execution_provider out of range
REFUSED_DROPPED = "implausible_dropped"  # a dropped count rising faster than limits allow
REFUSED_LABEL = "label_cap"  # an event whose error kind or class was folded into "other"
REFUSED_CONNECTION = "scrape_connection"  # a /metrics connection beyond the concurrent cap
REFUSED_DRIFT = "drift"  # drift counts of another profile, or that do not fit this one
REFUSED_CAPTURE = "capture"  # a sample with no capture folder configured, or one not written
# The error kinds the mlpack runtime reports (mlpack_runtime.served): like the request counter,
# their series exist from the start, at 0. Prometheus sees no increase in a series that
# appears with its first value, so without them rate() would miss a new replica's first
# requests and errors, which is what a canary analysis judges.
STARTING_ERROR_KINDS = ("bad_request", "model_error")
_MAX_ERROR_LOGS = 4  # "inference errors" log lines per datagram (the most frequent kinds)
_MAX_CLIENTS = 1024  # client processes whose last dropped count is remembered


class DroppedBooks:
    """`mlpack_agent_client_dropped_total`: the rises of each client's running count.

    A count is believed only if the total stays within `burst + per_s x seconds since the
    agent started`: no client can lose events faster than it could handle them, so a
    datagram claiming 1e12 (or a count rising faster than that) is refused. A count lower
    than the client's last is a new process under a reused pid: it starts from zero.
    """

    def __init__(self, per_s: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s, self.burst, self.clock = per_s, burst, clock
        self.started = clock()
        self.total = 0
        self._last: OrderedDict[int, int] = OrderedDict()

    def rise(self, pid: int, count: int) -> int | None:
        """The rise to add for `count`, the running count of client `pid`; None: refused."""
        last = self._last.get(pid, 0)
        rise = count - last if count >= last else count
        if self.total + rise > self.burst + self.per_s * (self.clock() - self.started):
            return None
        self.total += rise
        self._last[pid] = count
        self._last.move_to_end(pid)
        if len(self._last) > _MAX_CLIENTS:
            self._last.popitem(last=False)
        return rise


class InferenceMetrics:
    """Records checked datagrams; one instance per agent."""

    def __init__(self, meter: Meter, limits: LimitsConfig | None = None, drift: DriftConfig | None = None,
                 capture: CaptureConfig | None = None) -> None:
        limits = limits or LimitsConfig()
        self.max_label_values = limits.label_values
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
            "mlpack.agent.events.received", unit="{event}", description="Events the agent decoded and recorded"
        )
        self.refused = meter.create_counter(
            "mlpack.agent.refused", unit="{item}",
            description="Datagrams, events, fields and connections the agent refused, by reason",
        )
        self.client_dropped = meter.create_counter(
            "mlpack.agent.client.dropped", unit="{event}",
            description="Events services could not hand to the agent (agent down or busy)",
        )
        self.dropped_books = DroppedBooks(limits.dropped_per_s, limits.dropped_burst)
        # The latest execution provider a service reported: one series, or none yet.
        self.execution_provider: str | None = None
        meter.create_observable_gauge(
            "mlpack.execution_provider.info", callbacks=[self._observe_provider], unit="",
            description="The onnxruntime execution provider the served model's session runs on (value 1)",
        )
        self._seen: dict[str, set[Any]] = {"error.kind": set(), "class": set()}
        self.drift = self._drift_instruments(meter, drift) if drift is not None and drift.features else None
        self.capture = None
        if capture is not None and capture.dir:
            from .capture import CaptureFolder

            self.capture = CaptureFolder(capture)
            self.captured = meter.create_counter(
                "mlpack.agent.captured", unit="{sample}", description="Sampled request inputs written to the capture folder")
        self.requests.add(0)
        for kind in STARTING_ERROR_KINDS:
            self.errors.add(0, {"error.kind": self._bounded("error.kind", kind) or "other"})

    def _drift_instruments(self, meter: Meter, config: DriftConfig):
        from .drift import DriftWindow, observations

        window = DriftWindow(config)
        self.drift_rows = meter.create_counter(
            "mlpack.drift.rows", unit="{row}", description="Rows whose bin counts the agent added to the drift window")

        def per_feature(which: str):
            def observe(options: CallbackOptions):
                for value, attributes in observations(window.scores(), which):
                    yield Observation(value, attributes)
            return observe

        def overall(options: CallbackOptions):
            scores = window.scores()
            if scores is not None:
                yield Observation(scores.inputs_out_of_range)

        meter.create_observable_gauge(
            "mlpack.drift.psi", callbacks=[per_feature("psi")], unit="",
            description="Population stability index of each feature's window against the calibration data")
        meter.create_observable_gauge(
            "mlpack.drift.js_distance", callbacks=[per_feature("js")], unit="",
            description="Jensen-Shannon distance (base 2) of each feature's window against the calibration data")
        meter.create_observable_gauge(
            "mlpack.drift.out_of_range.ratio", callbacks=[per_feature("out_of_range")], unit="1",
            description="Share of the window's rows outside the calibration data's range, per feature")
        meter.create_observable_gauge(
            "mlpack.drift.inputs_out_of_range.ratio", callbacks=[overall], unit="1",
            description="Share of the window's rows with any input outside the calibration data's range")
        meter.create_observable_gauge(
            "mlpack.drift.window.rows", callbacks=[lambda options: [Observation(window.window[0])]], unit="{row}",
            description="Rows in the drift window (scores appear once it holds drift.min_rows)")
        return window

    def _observe_provider(self, options: CallbackOptions):
        if self.execution_provider is not None:
            yield Observation(1, {"execution_provider": self.execution_provider})

    def refuse(self, reason: str, count: int = 1) -> None:
        self.refused.add(count, {"reason": reason})

    def _bounded(self, key: str, value: Any) -> str | None:
        """Keep attribute cardinality bounded: past the cap, new values are refused (None)."""
        seen = self._seen[key]
        if value in seen:
            return str(value)
        if len(seen) < self.max_label_values:
            seen.add(value)
            return str(value)
        return None

    def record(self, checked: Checked, replayed: bool = False) -> int:
        """Record one checked datagram; returns the number of events recorded. A datagram
        replayed from the journal writes no capture sample again."""
        self._record_fields(checked)
        if checked.capture is not None and not replayed:
            self._capture(checked.capture)
        events = checked.events
        errors: Tally[str] = Tally()
        classes: Tally[Any] = Tally()
        model_h, total_h = self.model_duration.record, self.duration.record
        batch_h, input_h, norm_h = self.batch_size.record, self.input_size.record, self.output_norm.record
        for model_ms, total_ms, batch_size, input_bytes, ok, error_kind, predicted, norm in events:
            if total_ms is not None:
                total_h(total_ms / 1000.0)
            if not ok:  # a failed request has no model time or batch worth a histogram
                errors[error_kind or "unknown"] += 1
                continue
            if model_ms is not None:
                model_h(model_ms / 1000.0)
            batch_h(batch_size)
            input_h(input_bytes)
            if predicted:
                classes.update(predicted)
            if norm is not None:
                norm_h(norm)
        # Counters are summed per datagram: one SDK call instead of one per event.
        n = len(events)
        if n:
            self.requests.add(n)
            self.events_received.add(n)
        self._count_by("error.kind", errors, self.errors)
        self._count_by("class", classes, self.predictions)
        for kind, count in errors.most_common(_MAX_ERROR_LOGS):
            log.warning("inference errors", extra={"error.kind": self._bounded("error.kind", kind) or "other",
                                                   "count": count})
        return n

    def _count_by(self, key: str, tally: Tally, counter) -> None:
        folded = 0
        for value, count in tally.items():
            name = self._bounded(key, value)
            if name is None:
                folded += count
            else:
                counter.add(count, {key: name})
        if folded:
            counter.add(folded, {key: "other"})
            self.refuse(REFUSED_LABEL, folded)

    def _capture(self, inputs: dict[str, Any]) -> None:
        if self.capture is not None and self.capture.write(inputs):
            self.captured.add(1)
        else:
            self.refuse(REFUSED_CAPTURE)

    def _record_fields(self, checked: Checked) -> None:
        if checked.invalid_events:
            self.refuse(REFUSED_EVENT, checked.invalid_events)
        if checked.invalid_fields:
            self.refuse(REFUSED_FIELD, checked.invalid_fields)
        if checked.execution_provider is not None:
            self.execution_provider = checked.execution_provider
        if checked.drift is not None:
            if self.drift is not None and self.drift.add(checked.drift):
                self.drift_rows.add(checked.drift["rows"])
            else:
                self.refuse(REFUSED_DRIFT)
        if checked.dropped is not None:
            rise = self.dropped_books.rise(checked.pid, checked.dropped)
            if rise is None:
                self.refuse(REFUSED_DROPPED)
            else:
                self.client_dropped.add(rise)  # 0 too: the series exists once a client reported
