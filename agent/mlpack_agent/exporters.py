"""OpenTelemetry exporters that write OTLP requests into the on-disk spool.

The SDK's readers and processors call `export` on their own threads; writing a file is
all that happens there. Delivery (and retrying) is the spool `Sender`'s job, so an
unreachable collector never blocks or loses an export.
"""

from __future__ import annotations

from collections.abc import Sequence

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

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        points = count_points(metrics_data)
        if points == 0:
            return MetricExportResult.SUCCESS
        try:
            self.spool.put("metrics", encode_metrics(metrics_data).SerializeToString(), points)
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        return None


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
