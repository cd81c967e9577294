"""The agent process: receive event datagrams, keep OpenTelemetry metrics and logs, export them.

Threads: one drains the Unix socket (only `recv`, the sender's credentials checked, and
with OTLP on an append to the event journal, so the kernel's short datagram queue never
fills), one checks, decodes and records, the Prometheus endpoint collects on each scrape,
one checkpoints (OTLP: fsyncs the journal and exports into the spool at each interval),
and the spool sender ships OTLP requests from disk.

What bounds the agent's memory and disk whatever it is sent: at most 256 datagrams of at
most 64 KiB wait for the recorder; series are capped (metrics.py); the buffer folder,
journal included, stays under `buffer.max_bytes` (a quarter for the journal, the rest
for exports, see `buffer_budgets`).
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from pathlib import Path

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import Resource

from . import __version__, trust
from .config import AgentConfig
from .health import register_health
from .metrics import REFUSED_CONNECTION, REFUSED_MALFORMED, REFUSED_SENDER, InferenceMetrics
from .validate import Malformed, check

log = logging.getLogger("mlpack_agent")

# Datagrams waiting for the recorder; beyond this the agent stops reading its socket.
_MAX_QUEUED_DATAGRAMS = 256  # ~16k events, ~1 MiB
_RECV_BYTES = 65536  # > MAX_DATAGRAM_BYTES, and below malloc's mmap threshold
# The share of `buffer.max_bytes` the event journal may hold; exports get the rest.
JOURNAL_SHARE = 4


def buffer_budgets(max_bytes: int) -> tuple[int, int]:
    """(spool bytes, journal bytes): together never more than `buffer.max_bytes`."""
    journal = max_bytes // JOURNAL_SHARE
    return max_bytes - journal, journal


class _Pause:
    """Queued at a checkpoint: the recorder stops here until the collection is done, so an
    export holds exactly the datagrams queued before it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.resume = threading.Event()


class _Replayed:
    """A datagram of the previous run's journal: recorded again, but writes no capture sample."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _copied_to_prometheus_labels(key: str) -> bool:
    # Resource attributes that also label every Prometheus series, so dashboards can
    # filter by model and target without joining on target_info.
    return key in ("service.name", "service.version") or key.startswith("mlpack.")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        logging.basicConfig(  # before the spool and journal, which log what they find on disk
            level=config.log_level.upper(), stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        self.resource = Resource.create(
            {"service.name": "mlpack-agent", "mlpack.agent.version": __version__, **config.resource}
        )
        self.spool = self.sender = self.journal = self.otlp_reader = None
        self.logger_provider = None
        readers = []
        self.prometheus_server = None
        if config.prometheus.enabled:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader(resource_attribute_filter=_copied_to_prometheus_labels))
        if config.otlp.endpoint:
            from .exporters import CheckpointReader, SpoolingMetricExporter
            from .journal import Journal
            from .spool import Sender, Spool

            spool_bytes, journal_bytes = buffer_budgets(config.buffer.max_bytes)
            self.spool = Spool(config.buffer.dir, spool_bytes)
            self.journal = Journal(Path(config.buffer.dir) / "journal", covered=self.spool.covered,
                                   max_bytes=journal_bytes)
            self.sender = Sender(
                self.spool, config.otlp.endpoint, config.otlp.headers,
                timeout_s=config.otlp.timeout_s, max_backoff_s=config.otlp.max_backoff_s,
            )
            self.exporter = SpoolingMetricExporter(self.spool, config.otlp.temporality)
            self.otlp_reader = CheckpointReader(config.otlp.temporality, self.checkpoint)
            readers.append(self.otlp_reader)
        # No exemplars: there are no traces to link them to, and sampling costs per measurement.
        self.meter_provider = MeterProvider(
            metric_readers=readers, resource=self.resource, exemplar_filter=AlwaysOffExemplarFilter()
        )
        meter = self.meter_provider.get_meter("mlpack_agent", __version__)
        self.metrics = InferenceMetrics(meter, config.limits, config.drift, config.capture)
        self.senders = trust.SenderPolicy(same_pid_namespace=config.peers.same_pid_namespace)
        if config.health.enabled:
            register_health(meter, config.health.disk_path, config.health.thermal_dir, self.spool)
        self._queue: queue.SimpleQueue[bytes | _Replayed | threading.Event | _Pause | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_due = threading.Event()
        self._recorder: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._setup_logs()
        if self.config.prometheus.enabled:
            from . import exposition

            self.prometheus_server = exposition.start(
                self.config.prometheus, on_refused=lambda: self.metrics.refuse(REFUSED_CONNECTION))
        if self.sender is not None:
            self.sender.start()
        self._recorder = threading.Thread(target=self._record, name="mlpack-agent-record", daemon=True)
        self._recorder.start()
        if self.journal is not None:
            self._replay_journal()
            self._checkpointer = threading.Thread(target=self._checkpoints, name="mlpack-agent-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        self._sock = trust.bind(self.config.socket)
        self._receiver = threading.Thread(target=self._receive, name="mlpack-agent-recv", daemon=True)
        self._receiver.start()
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
        self.meter_provider.force_flush(timeout_millis=int(timeout_s * 1000))  # OTLP: a checkpoint
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
        if self._checkpointer is not None:
            self._checkpoint_due.set()
            self._checkpointer.join(timeout=remaining())
            self.checkpoint(timeout_s=remaining())  # the journal is empty after this one
        self._queue.put(None)
        log.info("agent stopping")
        self.meter_provider.shutdown(timeout_millis=remaining() * 1000)
        if self.journal is not None:
            self.journal.close()
        if self.metrics.capture is not None:
            self.metrics.capture.close()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        if self.sender is not None:
            self.sender.stop()
            self.sender.join(timeout=remaining())
            if not self.sender.is_alive():  # never two senders on one file
                self.sender.drain(deadline_s=remaining())
        if self.prometheus_server is not None:
            self.prometheus_server.shutdown()
            self.prometheus_server.server_close()
        if self.spool is not None:
            log.info("agent stopped: %s", self.spool.books())

    # -- checkpoints (OTLP) --------------------------------------------------------------

    def checkpoint(self, timeout_s: float = 5.0) -> None:
        """Export what was recorded into the spool, then free the journal segments it holds.

        The journal is sealed and a pause queued under the journal's lock, so the datagrams
        before the pause are exactly those in the sealed segments; the recorder stops at the
        pause while the reader collects.
        """
        if self.journal is None or self.otlp_reader is None:
            return
        with self._checkpoint_lock:
            pause = _Pause()
            with self.journal.lock:
                sealed = self.journal.rotate()
                self._queue.put(pause)
            recording = self._recorder is not None and self._recorder.is_alive()
            if recording and not pause.reached.wait(timeout_s):
                # Never lose data for it: the sealed segments stay and are freed by a later
                # checkpoint; at worst a restart replays events that were also exported.
                log.warning("recorder did not reach the checkpoint in time")
                pause.resume.set()
                return
            try:
                data = self.otlp_reader.take(timeout_millis=timeout_s * 1000)
            finally:
                pause.resume.set()
            if data is None:
                return
            from opentelemetry.sdk.metrics.export import MetricExportResult

            if self.exporter.export(data, covers=sealed) == MetricExportResult.SUCCESS:
                self.journal.release(sealed)

    def _checkpoints(self) -> None:
        """Fsync the journal every `buffer.fsync_interval_s`; checkpoint every `otlp.interval_s`
        (sooner when a journal segment is full)."""
        interval, fsync_every = self.config.otlp.interval_s, self.config.buffer.fsync_interval_s
        next_export = time.monotonic() + interval
        while not self._stopping.is_set():
            due = self._checkpoint_due.wait(max(0.0, min(fsync_every, next_export - time.monotonic())))
            if self._stopping.is_set():
                return  # stop() runs the last checkpoint
            self.journal.sync()
            if due or time.monotonic() >= next_export:
                self._checkpoint_due.clear()
                try:
                    self.checkpoint()
                except Exception:  # noqa: BLE001 - a failed export must not end checkpoints
                    log.exception("checkpoint failed")
                next_export = time.monotonic() + interval

    def _replay_journal(self) -> None:
        """Record again the datagrams of a killed agent that no export holds yet."""
        replayed = 0
        for data in self.journal.replay():
            self._queue.put(_Replayed(data))
            replayed += 1
        if replayed:
            log.info("replayed the event journal of the previous run: %d datagrams no export held",
                     replayed, extra={"datagrams": replayed})

    def _enqueue(self, data: bytes) -> None:
        """Journal (with OTLP on) and queue one datagram for the recorder."""
        journal = self.journal
        if journal is None:
            self._queue.put(data)
            return
        with journal.lock:
            filled = journal.append(data)
            self._queue.put(data)
        if filled:  # once per segment: an early export frees the journal
            self._checkpoint_due.set()

    def _catch_up(self, timeout_s: float) -> None:
        """Wait until the recorder has handled everything queued before this call."""
        marker = threading.Event()
        self._queue.put(marker)
        marker.wait(timeout_s)

    def _drain_socket(self) -> None:
        self._sock.setblocking(False)
        while True:
            try:
                self._accept(trust.receive(self._sock, _RECV_BYTES))
            except OSError:
                return

    # -- events ------------------------------------------------------------------------

    def _accept(self, received: trust.Received) -> None:
        """Queue (and journal) a datagram from an accepted sender; count the others."""
        if self.senders.refuses(received):
            self.metrics.refuse(REFUSED_SENDER)
        elif received.truncated:
            self.metrics.refuse(REFUSED_MALFORMED)
        else:
            self._enqueue(received.data)

    def _receive(self) -> None:
        sock, accept, q = self._sock, self._accept, self._queue
        sock.settimeout(0.2)  # to notice stop(); stop() drains what is left
        while not self._stopping.is_set():
            try:
                received = trust.receive(sock, _RECV_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return
            accept(received)
            # Overloaded: stop reading, so that the socket fills and the clients keep (and
            # if need be drop and count) events, rather than losing them here unseen.
            while q.qsize() >= _MAX_QUEUED_DATAGRAMS and not self._stopping.is_set():
                time.sleep(0.001)

    def _record(self) -> None:
        get, record, refuse = self._queue.get, self.metrics.record, self.metrics.refuse
        while True:
            data = get()
            if data is None:
                return
            if isinstance(data, threading.Event):  # a flush waiting for us to catch up
                data.set()
                continue
            if isinstance(data, _Pause):  # a checkpoint collecting
                data.reached.set()
                data.resume.wait(30.0)
                continue
            try:
                if isinstance(data, _Replayed):
                    record(check(data.data), replayed=True)
                else:
                    record(check(data))
            except Malformed:
                refuse(REFUSED_MALFORMED)
            except Exception:  # noqa: BLE001 - one bad datagram must not stop the agent
                refuse(REFUSED_MALFORMED)
                log.warning("a datagram could not be recorded", exc_info=True)

    # -- logs --------------------------------------------------------------------------

    def _setup_logs(self) -> None:
        if not (self.config.otlp.endpoint and self.config.otlp.logs):
            return
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        from .exporters import SpoolingLogExporter

        self.logger_provider = LoggerProvider(resource=self.resource)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(SpoolingLogExporter(self.spool)))
        # Structured logs: `extra=` fields become OpenTelemetry log attributes.
        logging.getLogger("mlpack_agent").addHandler(LoggingHandler(logger_provider=self.logger_provider))
