"""Real components for tests and benchmarks: the agent as a process, an OTLP/HTTP
receiver that decodes opentelemetry-proto, a Prometheus server and the Lambda Extensions
API. All on 127.0.0.1. Test code: it lives here, not in `mlpack_agent`, so that no
artifact or wheel ships it (benchmarks import it as `tests.agent_harness`).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05, what: str = "condition",
             state: Callable[[], str] | None = None):
    """`predicate()` once it is true; on timeout, an error naming `what`, and `state()` (how far
    it got) where given."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}"
                               + (f": {state()}" if state is not None else ""))
        time.sleep(interval_s)


def _http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


class AgentProcess:
    """`mlpack-agent --config` in a subprocess, as it runs beside a service."""

    def __init__(self, workdir: Path, args: list[str] | None = None, env: dict[str, str] | None = None,
                 config_file: Path | None = None, prefix: list[str] | None = None, **overrides: Any) -> None:
        """Run with a config made here from `overrides`, or with an artifact's own
        `config_file`, whose socket, port and buffer are then moved here by env vars.
        `prefix`: a command the agent runs under (e.g. `unshare --pid --fork`)."""
        self.args = args or []
        self.prefix = prefix or []
        self.env = dict(env or {})
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.workdir / "run" / "agent.sock")  # the agent makes run/, mode 0700
        self.port = free_port()
        config: dict[str, Any] = {
            "socket": self.socket,
            "resource": {"service.name": "test-model-x86-cpu", "mlpack.model.name": "test-model",
                         "mlpack.target": "x86-cpu"},
            "prometheus": {"host": "127.0.0.1", "port": self.port},
            "buffer": {"dir": str(self.workdir / "buffer")},
            "health": {"disk_path": str(self.workdir)},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config = config
        if config_file is not None:
            self.config_path = Path(config_file)
            self.config = {**json.loads(self.config_path.read_text()), "socket": self.socket,
                           "prometheus": {**config["prometheus"], "enabled": True}}
            self.env.update({
                "MLPACK_AGENT_SOCKET": self.socket, "MLPACK_AGENT_PROMETHEUS_HOST": "127.0.0.1",
                "MLPACK_AGENT_PROMETHEUS_PORT": str(self.port), "MLPACK_AGENT_BUFFER_DIR": config["buffer"]["dir"],
            })
        else:
            self.config_path = self.workdir / "agent.json"
            self.config_path.write_text(json.dumps(config, indent=2))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "AgentProcess":
        self.log = open(self.workdir / "agent.log", "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "mlpack_agent.main", "--config", str(self.config_path), *self.args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        ready = lambda: os.path.exists(self.socket) and (  # noqa: E731
            not self.config["prometheus"].get("enabled", True) or self.scrape() is not None
        )
        try:
            wait_for(lambda: ready() or self.proc.poll() is not None, timeout_s, what="the agent to start")
        finally:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {(self.workdir / 'agent.log').read_text()[-2000:]}")
        return self

    def scrape(self) -> str | None:
        return _http_get(f"http://127.0.0.1:{self.port}/metrics")

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.scrape() or ""
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def rss_bytes(self) -> int:
        statm = Path(f"/proc/{self.proc.pid}/statm").read_text().split()
        return int(statm[1]) * os.sysconf("SC_PAGE_SIZE")

    def peak_rss_bytes(self) -> int:
        """The most resident memory the agent process has used so far (VmHWM)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(li for li in status.splitlines() if li.startswith("VmHWM:")).split()[1]) * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the agent process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()


class OtlpReceiver:
    """An OTLP/HTTP collector stand-in: decodes every request with opentelemetry-proto.

    `stop()` closes the listening socket, so the agent sees connection refused, exactly
    as with a collector that is down; `start()` listens on the same port again.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.metrics: list[Any] = []  # ExportMetricsServiceRequest, in arrival order
        self.logs: list[Any] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OtlpReceiver":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
            ExportMetricsServiceResponse,
        )

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/metrics":
                    message = ExportMetricsServiceRequest.FromString(body)
                    with receiver._lock:
                        receiver.metrics.append(message)
                elif self.path == "/v1/logs":
                    message = ExportLogsServiceRequest.FromString(body)
                    with receiver._lock:
                        receiver.logs.append(message)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def points(self, metric_name: str) -> list[Any]:
        """Every data point of `metric_name` received so far."""
        with self._lock:
            requests = list(self.metrics)
        found = []
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == metric_name:
                            kind = metric.WhichOneof("data")
                            found.extend(getattr(metric, kind).data_points)
        return found

    def sum_of(self, metric_name: str) -> float:
        """Total of a delta counter: every point counted once."""
        return sum(p.as_int or p.as_double for p in self.points(metric_name))


class PrometheusServer:
    """The Debian `prometheus` binary scraping the given targets every second."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[str] | None = None) -> None:
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files or [],
            "scrape_configs": [{"job_name": "mlpack-agent", "static_configs": [{"targets": targets}]}],
        }
        # JSON is valid YAML.
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> "PrometheusServer":
        self.log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _http_get(f"http://127.0.0.1:{self.port}/-/ready") is not None, timeout_s,
                 interval_s=0.2, what="prometheus to be ready")
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: a PromQL error, explained in the body
            body = json.load(exc)
        if body.get("status") != "success":
            raise ValueError(f"PromQL error for {promql!r}: {body}")
        return body["data"]["result"]

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.load(response)["data"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "log", None):
            self.log.close()


class ExtensionsApi:
    """The Lambda Extensions API as Lambda serves it: register, then a blocking event/next."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: queue.Queue[dict] = queue.Queue()
        self.registered: list[dict] = []
        self.registered_at: float | None = None  # perf_counter of the registration
        self.first_wait_at: float | None = None  # perf_counter when init was done
        self.waiting = threading.Event()  # the extension is blocked in event/next
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                assert self.path == "/2020-01-01/extension/register", self.path
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.registered.append({"name": self.headers["Lambda-Extension-Name"], **body})
                api.registered_at = time.perf_counter()
                self._json({"functionName": "f", "functionVersion": "$LATEST", "handler": "h"},
                           {"Lambda-Extension-Identifier": "ext-1"})

            def do_GET(self) -> None:  # noqa: N802
                assert self.path == "/2020-01-01/extension/event/next"
                assert self.headers["Lambda-Extension-Identifier"] == "ext-1"
                if api.first_wait_at is None:
                    api.first_wait_at = time.perf_counter()
                api.waiting.set()
                event = api.events.get()
                api.waiting.clear()
                self._json(event, {})

            def _json(self, payload: dict, headers: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def send(self, event_type: str) -> None:
        wait_for(self.waiting.is_set, 10, what="the extension to wait for an event")
        self.events.put({"eventType": event_type, "deadlineMs": int(time.time() * 1000) + 3000})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rules_firing_at_once(groups: list[dict[str, Any]], path: Path) -> Path:
    """Prometheus rule groups written to `path` with each rule's `for:` set to 0, so that an alert
    fires within a test (tests/test_alert_rules.py checks each real `for:` with promtool)."""
    for group in groups:
        for rule in group["rules"]:
            rule["for"] = "0s"
    path.write_text(json.dumps({"groups": groups}))
    return path
