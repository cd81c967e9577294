"""The service-side client: standard library only, never raises, counts what it drops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpack_agent.client import EventClient
from mlpack_agent.config import ConfigError, load_config
from mlpack_agent.protocol import EVENT_FIELDS, MAX_DATAGRAM_BYTES


@pytest.fixture
def listener(tmp_path: Path):
    path = str(tmp_path / "agent.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def receive_all(sock: socket.socket) -> list[dict]:
    datagrams = []
    sock.settimeout(0.2)
    try:
        while True:
            datagrams.append(json.loads(sock.recv(1 << 20)))
    except TimeoutError:
        return datagrams


def test_client_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, mlpack_agent.client;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'google', 'prometheus_client')];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_events_arrive_batched_in_field_order_without_labels(listener) -> None:
    path, sock = listener
    client = EventClient({"model_name": "digits"}, socket_path=path, batch=4, linger_s=0)
    for i in range(10):
        client.inference(model_ms=1.0, total_ms=2.0 + i, batch_size=1, input_bytes=256, ok=True, predicted=[i])
    client.flush()
    datagrams = receive_all(sock)
    assert [len(d["events"]) for d in datagrams] == [4, 4, 2]
    event = dict(zip(EVENT_FIELDS, datagrams[0]["events"][1]))
    assert event == {"model_ms": 1.0, "total_ms": 3.0, "batch_size": 1, "input_bytes": 256, "ok": True,
                     "error_kind": None, "predicted": [1], "output_norm": None}
    # The agent labels series from its own configuration: labels never travel.
    assert "labels" not in datagrams[0] and datagrams[0]["pid"] == os.getpid()
    assert client.sent == 10 and client.dropped == 0


def test_a_quiet_service_still_sends_within_the_linger_time(listener) -> None:
    path, sock = listener
    client = EventClient({}, socket_path=path, batch=64, linger_s=0.05)
    client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    assert len(json.loads(sock.recv(65536))["events"]) == 1


def test_numpy_values_and_huge_outputs_are_sent_not_raised(listener) -> None:
    path, sock = listener
    client = EventClient({}, socket_path=path, batch=1, linger_s=0)
    client.inference(model_ms=np.float32(1.5), total_ms=2.0, batch_size=np.int64(3), input_bytes=12, ok=True,
                     predicted=np.arange(3), output_norm=np.float64(0.5))
    client.inference(model_ms=1.0, total_ms=2.0, batch_size=50_000, input_bytes=1, ok=True,
                     predicted=list(range(50_000)))  # far beyond one datagram
    first, second = receive_all(sock)
    assert first["events"][0][:4] == [1.5, 2.0, 3, 12] and first["events"][0][6] == [0, 1, 2]
    assert second["events"][0][6] is None  # the measurement survives, the class list does not
    assert client.dropped == 0


def test_without_an_agent_nothing_raises_and_every_event_is_counted(tmp_path: Path) -> None:
    client = EventClient({}, socket_path=str(tmp_path / "nobody.sock"), batch=8, linger_s=0)
    assert client._sock.getblocking() is False  # no send can wait: it succeeds, or fails at once
    for _ in range(100):
        client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    client.flush()
    assert client.dropped == 100 and client.sent == 0


def test_from_env_reads_socket_batch_and_disable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPACK_AGENT_SOCKET", str(tmp_path / "s.sock"))
    monkeypatch.setenv("MLPACK_AGENT_BATCH", "1")
    client = EventClient.from_env({"target": "aws-lambda"})
    assert client.socket_path == str(tmp_path / "s.sock") and client.batch == 1
    monkeypatch.setenv("MLPACK_AGENT_DISABLED", "1")
    off = EventClient.from_env({})
    off.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    assert off.dropped == 0 and off.sent == 0


def test_a_forked_worker_reports_on_its_own(listener) -> None:
    path, sock = listener
    client = EventClient({}, socket_path=path, batch=1, linger_s=0)
    pid = os.fork()
    if pid == 0:  # the child: a pre-forking server's worker
        client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
        os._exit(0 if client.sent == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(sock.recv(65536))["pid"] == pid


def test_datagram_limit_fits_the_kernel_default() -> None:
    assert MAX_DATAGRAM_BYTES < 200_000


def test_config_env_overrides_file_and_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"_generated": "note", "prometheus": {"port": 9000}, "otlp": {"interval_s": 5}}))
    config = load_config(path, env={"MLPACK_AGENT_PROMETHEUS_PORT": "9100",
                                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert config.prometheus.port == 9100 and config.otlp.interval_s == 5.0
    assert config.otlp.endpoint == "http://collector:4318"
    path.write_text(json.dumps({"prometheus": {"prot": 1}}))
    with pytest.raises(ConfigError, match="prometheus.prot"):
        load_config(path, env={})
    path.write_text(json.dumps({"prometheus": {"port": "many"}}))
    with pytest.raises(ConfigError, match="prometheus.port"):
        load_config(path, env={})


def test_cli_check_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "mlpack_agent.main", "--config", str(path), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not valid JSON" in result.stderr


def test_a_busy_agent_delays_events_without_losing_or_blocking(listener) -> None:
    path, sock = listener  # bound but not read: the kernel queue fills after max_dgram_qlen datagrams
    events = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text()) + 40
    client = EventClient({}, socket_path=path, batch=1, linger_s=0)
    assert client._sock.getblocking() is False  # a full queue is EAGAIN at once, never a wait
    for _ in range(events):
        client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    # Some went to the kernel's queue, the rest wait in the client's; none lost, none blocked.
    assert client.dropped == 0 and 0 < client.sent < events and len(client._queue) == events - client.sent
    received = []
    for _ in range(20):  # the agent catches up
        received.extend(receive_all(sock))
        if not client._queue:
            break
        client.flush(timeout_s=0.2)
    received.extend(receive_all(sock))
    assert sum(len(d["events"]) for d in received) == events and client.dropped == 0


def test_agent_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"socket": str(tmp_path / "a.sock"), "prometheus": {"enabled": False},
                                "otlp": {"endpoint": "http://127.0.0.1:9"},
                                "buffer": {"dir": str(blocker / "buffer")}}))  # under a file
    result = subprocess.run([sys.executable, "-m", "mlpack_agent.main", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("mlpack-agent")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("mlpack-agent ")


def test_the_execution_provider_goes_out_at_once_and_rides_on_every_later_datagram(listener) -> None:
    path, sock = listener
    client = EventClient({}, socket_path=path, batch=1, linger_s=0)
    client.provider("CUDAExecutionProvider")
    client.provider("cuda; rm -rf /")  # not a provider's name: ignored, never raised
    client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True, output_norm=float("nan"))
    announced, event = receive_all(sock)
    assert announced["execution_provider"] == "CUDAExecutionProvider" and announced["events"] == []
    assert event["execution_provider"] == "CUDAExecutionProvider"
    assert event["events"][0][7] is None  # a NaN norm is no norm: the request still counts
