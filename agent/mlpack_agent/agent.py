"""The agent process: receive event datagrams, keep OpenTelemetry metrics and logs, export them.

Threads: one drains the Unix socket (only `recv`, so the kernel's short datagram queue
never fills), one decodes and records, the SDK's reader threads collect and export, and
the spool sender ships OTLP requests from disk.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import stat
import sys
import threading
import time
from pathlib import Path

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from . import __version__
from .config import AgentConfig
from .health import register_health
from .metrics import InferenceMetrics

log = logging.getLogger("mlpack_agent")

# Datagrams waiting for the recorder; beyond this the agent stops reading its socket.
_MAX_QUEUED_DATAGRAMS = 256  # ~16k events, ~1 MiB
_RECV_BYTES = 65536  # > MAX_DATAGRAM_BYTES, and below malloc's mmap threshold


def _copied_to_prometheus_labels(key: str) -> bool:
    # Resource attributes that also label every Prometheus series, so dashboards can
    # filter by model and target without joining on target_info.
    return key in ("service.name", "service.version") or key.startswith("mlpack.")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.resource = Resource.create(
            {"service.name": "mlpack-agent", "mlpack.agent.version": __version__, **config.resource}
        )
        self.resource_attrs = {k: str(v) for k, v in self.resource.attributes.items()}
        self.spool = self.sender = None
        self.logger_provider = None
        readers = []
        self.prometheus_server = None
        if config.prometheus.enabled:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader(resource_attribute_filter=_copied_to_prometheus_labels))
        if config.otlp.endpoint:
            from .exporters import SpoolingMetricExporter
            from .spool import Sender, Spool

            self.spool = Spool(config.buffer.dir, config.buffer.max_bytes)
            self.sender = Sender(
                self.spool, config.otlp.endpoint, config.otlp.headers,
                timeout_s=config.otlp.timeout_s, max_backoff_s=config.otlp.max_backoff_s,
            )
            readers.append(PeriodicExportingMetricReader(
                SpoolingMetricExporter(self.spool, config.otlp.temporality),
                export_interval_millis=config.otlp.interval_s * 1000,
            ))
        # No exemplars: there are no traces to link them to, and sampling costs per measurement.
        self.meter_provider = MeterProvider(
            metric_readers=readers, resource=self.resource, exemplar_filter=AlwaysOffExemplarFilter()
        )
        meter = self.meter_provider.get_meter("mlpack_agent", __version__)
        self.metrics = InferenceMetrics(meter, config.max_label_values)
        if config.health.enabled:
            register_health(meter, config.health.disk_path, config.health.thermal_dir, self.spool)
        self._queue: queue.SimpleQueue[bytes | threading.Event | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._setup_logs()
        if self.config.prometheus.enabled:
            from prometheus_client import start_http_server

            self.prometheus_server, _ = start_http_server(self.config.prometheus.port, self.config.prometheus.host)
        if self.sender is not None:
            self.sender.start()
        self._sock = self._bind(self.config.socket)
        self._receiver = threading.Thread(target=self._receive, name="mlpack-agent-recv", daemon=True)
        self._receiver.start()
        self._recorder = threading.Thread(target=self._record, name="mlpack-agent-record", daemon=True)
        self._recorder.start()
        log.info(
            "agent ready",
            extra={"socket": self.config.socket, "prometheus_port": self.prometheus_port or 0,
                   "otlp_endpoint": self.config.otlp.endpoint or ""},
        )

    @property
    def prometheus_port(self) -> int | None:
        return self.prometheus_server.server_port if self.prometheus_server else None

    def flush(self, timeout_s: float = 1.0) -> None:
        """Record every datagram received so far, then export (OTLP: to the disk buffer)."""
        self._catch_up(timeout_s)
        self.meter_provider.force_flush(timeout_millis=int(timeout_s * 1000))
        if self.logger_provider is not None:
            self.logger_provider.force_flush(timeout_millis=int(timeout_s * 1000))

    def stop(self, deadline_s: float = 5.0) -> None:
        """Record what was sent, flush it to the exporters (and the disk buffer), then close.

        Keeps within `deadline_s` (Lambda gives an extension 2 s at SHUTDOWN); OTLP data
        not delivered by then stays on disk for the next start.
        """
        end = time.monotonic() + deadline_s
        remaining = lambda: max(0.0, end - time.monotonic())  # noqa: E731
        self._stopping.set()
        if self._sock is not None:
            Path(self.config.socket).unlink(missing_ok=True)  # new sends now fail, and count
            self._receiver.join(timeout=1.0)
            self._drain_socket()
            self._sock.close()
        self._catch_up(remaining())
        self._queue.put(None)
        log.info("agent stopping")
        self.meter_provider.shutdown(timeout_millis=remaining() * 1000)
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        if self.sender is not None:
            self.sender.stop()
            self.sender.join(timeout=remaining())
            if not self.sender.is_alive():  # never two senders on one file
                self.sender.drain(deadline_s=remaining())
        if self.prometheus_server is not None:
            self.prometheus_server.shutdown()

    def _catch_up(self, timeout_s: float) -> None:
        """Wait until the recorder has handled everything queued before this call."""
        marker = threading.Event()
        self._queue.put(marker)
        marker.wait(timeout_s)

    def _drain_socket(self) -> None:
        self._sock.setblocking(False)
        while True:
            try:
                self._queue.put(self._sock.recv(_RECV_BYTES))
            except OSError:
                return

    # -- events ------------------------------------------------------------------------

    def _bind(self, path: str) -> socket.socket:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            if not stat.S_ISSOCK(target.lstat().st_mode):
                raise OSError(f"{path} exists and is not a socket; choose another socket path")
            target.unlink()  # left behind by an agent that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        # Services may run as another user (a sidecar); access is governed by the folder.
        os.chmod(path, 0o666)
        return sock

    def _receive(self) -> None:
        sock, put, q = self._sock, self._queue.put, self._queue
        sock.settimeout(0.2)  # to notice stop(); stop() drains what is left
        while not self._stopping.is_set():
            try:
                data = sock.recv(_RECV_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            put(data)
            # Overloaded: stop reading, so that the socket fills and the clients keep (and
            # if need be drop and count) events, rather than losing them here unseen.
            while q.qsize() >= _MAX_QUEUED_DATAGRAMS and not self._stopping.is_set():
                time.sleep(0.001)

    def _record(self) -> None:
        get, record, resource = self._queue.get, self.metrics.record, self.resource_attrs
        malformed = self.metrics.malformed
        while True:
            data = get()
            if data is None:
                return
            if isinstance(data, threading.Event):  # a flush waiting for us to catch up
                data.set()
                continue
            try:
                datagram = json.loads(data)
                if datagram.get("v") != 1:
                    raise ValueError("unknown protocol version")
                record(datagram, resource)
            except Exception:  # noqa: BLE001 - one bad datagram must not stop the agent
                malformed.add(1)
                log.debug("malformed datagram", exc_info=True)

    # -- logs --------------------------------------------------------------------------

    def _setup_logs(self) -> None:
        logging.basicConfig(
            level=self.config.log_level.upper(), stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not (self.config.otlp.endpoint and self.config.otlp.logs):
            return
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        from .exporters import SpoolingLogExporter

        self.logger_provider = LoggerProvider(resource=self.resource)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(SpoolingLogExporter(self.spool)))
        # Structured logs: `extra=` fields become OpenTelemetry log attributes.
        logging.getLogger("mlpack_agent").addHandler(LoggingHandler(logger_provider=self.logger_provider))
