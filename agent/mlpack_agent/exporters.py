"""OpenTelemetry exporters that write OTLP requests into the on-disk spool.

The SDK's processors (and the agent's checkpoints, for metrics) call `export`; writing a
file is all that happens there. Delivery (and retrying) is the spool `Sender`'s job, so an
unreachable collector never blocks or loses an export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)

from .spool import Spool


def _temporality(kind: str) -> dict[type, AggregationTemporality]:
    chosen = AggregationTemporality.DELTA if kind == "delta" else AggregationTemporality.CUMULATIVE
    return {
        Counter: chosen,
        Histogram: chosen,
        ObservableCounter: chosen,
        # Up-down counters and gauges are levels: cumulative is the only meaningful choice.
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableGauge: AggregationTemporality.CUMULATIVE,
    }


def count_points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


class SpoolingMetricExporter(MetricExporter):
    def __init__(self, spool: Spool, temporality: str = "cumulative") -> None:
        super().__init__(preferred_temporality=_temporality(temporality))
        self.spool = spool

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, covers: int | None = None,
               **kwargs) -> MetricExportResult:
        """Spool one export; `covers`: the journal segment whose events it holds."""
        points = count_points(metrics_data)
        if points == 0:
            return MetricExportResult.SUCCESS
        try:
            self.spool.put("metrics", encode_metrics(metrics_data).SerializeToString(), points, covers)
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        return None


class CheckpointReader(MetricReader):
    """A metric reader that collects only when the agent checkpoints (`Agent.checkpoint`),
    never on a timer of its own: each collection must match a sealed journal segment.
    `force_flush` (the SDK's, or the Lambda extension's) runs a checkpoint too."""

    def __init__(self, temporality: str, checkpoint: Callable[[], None]) -> None:
        super().__init__(preferred_temporality=_temporality(temporality))
        self._checkpoint = checkpoint
        self._collected: MetricsData | None = None

    def take(self, timeout_millis: float = 10_000) -> MetricsData | None:
        """Collect now and hand over what was collected."""
        self.collect(timeout_millis=timeout_millis)
        data, self._collected = self._collected, None
        return data

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        self._collected = metrics_data

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self._checkpoint()
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        return None  # the agent's stop() runs the last checkpoint itself


class SpoolingLogExporter(LogRecordExporter):
    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            self.spool.put("logs", encode_logs(batch).SerializeToString(), len(batch))
        except OSError:
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
