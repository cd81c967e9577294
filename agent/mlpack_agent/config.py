"""The agent's configuration: a JSON file (rendered into each artifact) plus env overrides.

Example `agent.json`:

    {
      "socket": "/tmp/mlpack-agent/agent.sock",
      "peers": {"same_pid_namespace": false},
      "resource": {"service.name": "digits-x86-cpu", "mlpack.model.name": "digits"},
      "prometheus": {"enabled": true, "host": "127.0.0.1", "port": 9464,
                     "tls": {"cert_file": "/etc/mlpack/agent.crt", "key_file": "/etc/mlpack/agent.key"},
                     "basic_auth": {"username": "prometheus", "password_file": "/etc/mlpack/scrape-password"}},
      "otlp": {"endpoint": "http://collector:4318", "interval_s": 15},
      "buffer": {"dir": "/var/lib/mlpack-agent", "max_bytes": 67108864},
      "health": {"interval_s": 15, "disk_path": "/"},
      "limits": {"label_values": 200, "dropped_per_s": 100000, "dropped_burst": 1000000},
      "drift": {"profile": "0123456789abcdef", "window_rows": 1000, "slices": 10,
                "features": [{"name": "pixels[0]", "source": "input", "reference": [0, 430, 20, 0],
                              "outside": [0, 3]}, ...]},
      "capture": {"dir": "/var/lib/mlpack-agent/capture", "max_bytes": 67108864}
    }

The `drift` section is rendered by mlpack from the artifact's drift profile (its features'
names and calibration counts); without it the agent exports no drift metrics.

Environment variables override the file: see `_ENV` (MLPACK_AGENT_SOCKET,
MLPACK_AGENT_PROMETHEUS_HOST, MLPACK_AGENT_OTLP_ENDPOINT (else OTEL_EXPORTER_OTLP_ENDPOINT), ...).
OTEL_RESOURCE_ATTRIBUTES adds resource attributes, as everywhere in OpenTelemetry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from .protocol import DEFAULT_SOCKET


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the field and the fix."""


@dataclass
class TlsConfig:
    cert_file: str | None = None  # with key_file: /metrics is served over HTTPS
    key_file: str | None = None
    client_ca_file: str | None = None  # set: scrapers must present a certificate it signed (mutual TLS)


@dataclass
class BasicAuthConfig:
    username: str | None = None  # with password_file: scrapes must send these credentials
    password_file: str | None = None  # the password alone, as Prometheus' own password_file


@dataclass
class PrometheusConfig:
    enabled: bool = True
    # Loopback unless told otherwise: Kubernetes pods set 0.0.0.0 (their NetworkPolicy
    # admits only the scraper), devices keep it on the device.
    host: str = "127.0.0.1"
    port: int = 9464
    tls: TlsConfig = field(default_factory=TlsConfig)
    basic_auth: BasicAuthConfig = field(default_factory=BasicAuthConfig)


@dataclass
class PeersConfig:
    """Which processes may send events (trust.py): always only the agent's own user."""

    # Also refuse senders outside the agent's pid namespace: true where service and agent
    # share one (systemd, Lambda, mlpack serve), never for containers of a pod.
    same_pid_namespace: bool = False


@dataclass
class LimitsConfig:
    """Hard caps on what datagrams can make the agent export (metrics.py)."""

    # Distinct values kept per attribute (error kind, class) before folding into "other".
    label_values: int = 200
    # mlpack_agent_client_dropped_total rises at most this fast, plus the burst: a client's
    # running count beyond that is refused.
    dropped_per_s: int = 100_000
    dropped_burst: int = 1_000_000


@dataclass
class DriftConfig:
    """Drift of the model's inputs and outputs against its profile (drift.py)."""

    profile: str | None = None  # the profile's id: counts of another profile are refused
    window_rows: int = 1000  # rows the sliding window holds (the scores' sample)
    slices: int = 10  # the window slides by window_rows / slices rows at a time
    min_rows: int = 0  # scores are exported once the window holds this many rows; 0: half the window
    # One entry per feature, in the profile's slot order: name, source ("input" or
    # "output"), reference (the calibration data's count per slot), outside (the slots
    # that lie outside the profile's range).
    features: list = field(default_factory=list)


@dataclass
class CaptureConfig:
    """Where sampled request inputs are written (only a service started with
    MLPACK_CAPTURE_RATE sends any); None: samples are refused."""

    dir: str | None = None
    max_bytes: int = 64 * 1024 * 1024  # the folder's cap: the oldest files go first
    file_bytes: int = 1024 * 1024  # a new file once the current one holds this much


@dataclass
class OtlpConfig:
    endpoint: str | None = None  # e.g. http://collector:4318; None turns OTLP push off
    interval_s: float = 15.0
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    temporality: Literal["cumulative", "delta"] = "cumulative"
    max_backoff_s: float = 5.0
    logs: bool = True


@dataclass
class BufferConfig:
    dir: str = "/var/lib/mlpack-agent/buffer"
    max_bytes: int = 64 * 1024 * 1024
    # With OTLP on: how often the event journal reaches the disk (the most a power cut can
    # lose; a killed agent loses nothing it had read, see journal.py).
    fsync_interval_s: float = 1.0


@dataclass
class HealthConfig:
    enabled: bool = True
    disk_path: str = "/"
    thermal_dir: str = "/sys/class/thermal"


@dataclass
class AgentConfig:
    socket: str = DEFAULT_SOCKET
    peers: PeersConfig = field(default_factory=PeersConfig)
    resource: dict[str, str] = field(default_factory=dict)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log_level: str = "INFO"
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)


_ENV = {
    "MLPACK_AGENT_SOCKET": ("socket",),
    "MLPACK_AGENT_PROMETHEUS_HOST": ("prometheus", "host"),
    "MLPACK_AGENT_PROMETHEUS_PORT": ("prometheus", "port"),
    "MLPACK_AGENT_PROMETHEUS_CERT_FILE": ("prometheus", "tls", "cert_file"),
    "MLPACK_AGENT_PROMETHEUS_KEY_FILE": ("prometheus", "tls", "key_file"),
    "MLPACK_AGENT_PROMETHEUS_CLIENT_CA_FILE": ("prometheus", "tls", "client_ca_file"),
    "MLPACK_AGENT_PROMETHEUS_USERNAME": ("prometheus", "basic_auth", "username"),
    "MLPACK_AGENT_PROMETHEUS_PASSWORD_FILE": ("prometheus", "basic_auth", "password_file"),
    "MLPACK_AGENT_SAME_PID_NAMESPACE": ("peers", "same_pid_namespace"),
    "MLPACK_AGENT_OTLP_ENDPOINT": ("otlp", "endpoint"),
    "MLPACK_AGENT_OTLP_INTERVAL_S": ("otlp", "interval_s"),
    "MLPACK_AGENT_BUFFER_DIR": ("buffer", "dir"),
    "MLPACK_AGENT_BUFFER_MAX_BYTES": ("buffer", "max_bytes"),
    "MLPACK_AGENT_BUFFER_FSYNC_INTERVAL_S": ("buffer", "fsync_interval_s"),
    "MLPACK_AGENT_LOG_LEVEL": ("log_level",),
    "MLPACK_AGENT_CAPTURE_DIR": ("capture", "dir"),
    "MLPACK_AGENT_CAPTURE_MAX_BYTES": ("capture", "max_bytes"),
}


def load_config(path: str | os.PathLike[str] | None, env: dict[str, str] | None = None) -> AgentConfig:
    """Read the JSON file (if any), then apply environment overrides."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; pass the agent.json of the artifact") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON ({exc}); fix the file") from None
    if not env.get("MLPACK_AGENT_OTLP_ENDPOINT") and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        env["MLPACK_AGENT_OTLP_ENDPOINT"] = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    for var, keys in _ENV.items():
        if env.get(var):
            node = data
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = env[var]
    config = _build(AgentConfig, data, "")
    _check_pairs(config.prometheus)
    _check_drift(config.drift)
    _check_capture(config.capture)
    return config


_FEATURE_KEYS = {"name", "source", "reference", "outside"}
MAX_FEATURE_NAME = 128


def _check_drift(drift: DriftConfig) -> None:
    """Every feature as drift.py reads it; window sizes that make sense."""
    if drift.window_rows < 1 or drift.slices < 1 or drift.min_rows < 0:
        raise ConfigError("drift.window_rows and drift.slices must be at least 1, drift.min_rows at least 0")
    if drift.features and not drift.profile:
        raise ConfigError("drift.features needs drift.profile (the profile's id); rebuild the artifact")
    names = set()
    for i, feature in enumerate(drift.features):
        where = f"drift.features[{i}]"
        if not isinstance(feature, dict) or set(feature) != _FEATURE_KEYS:
            raise ConfigError(f"{where} must be an object with exactly {', '.join(sorted(_FEATURE_KEYS))}")
        name, reference, outside = feature["name"], feature["reference"], feature["outside"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_FEATURE_NAME or not name.isprintable() \
                or name in names:
            raise ConfigError(f"{where}.name must be a distinct printable string of at most {MAX_FEATURE_NAME} characters")
        names.add(name)
        if feature["source"] not in ("input", "output"):
            raise ConfigError(f"{where}.source is {feature['source']!r}; use \"input\" or \"output\"")
        if not isinstance(reference, list) or len(reference) < 2 or not all(
                type(c) is int and c >= 0 for c in reference) or sum(reference) == 0:
            raise ConfigError(f"{where}.reference must be at least two non-negative integer counts, not all 0")
        if not isinstance(outside, list) or not all(type(j) is int and 0 <= j < len(reference) for j in outside):
            raise ConfigError(f"{where}.outside must list slots of its reference (0 to {len(reference) - 1})")


def _check_capture(capture: CaptureConfig) -> None:
    if capture.max_bytes < 1 or not 0 < capture.file_bytes <= capture.max_bytes:
        raise ConfigError("capture.max_bytes must be positive and capture.file_bytes between 1 and max_bytes")


def _check_pairs(prometheus: PrometheusConfig) -> None:
    """Settings that mean nothing alone."""
    tls, auth = prometheus.tls, prometheus.basic_auth
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("prometheus.tls needs both cert_file and key_file; set the missing one or neither")
    if tls.client_ca_file and not tls.cert_file:
        raise ConfigError("prometheus.tls.client_ca_file needs cert_file and key_file (mutual TLS is TLS first)")
    if bool(auth.username) != bool(auth.password_file):
        raise ConfigError("prometheus.basic_auth needs both username and password_file; set the missing one or neither")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" fields
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(where + k for k in unknown)}; remove them or check the spelling")
    values = {}
    for name, value in data.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        values[name] = _coerce(default, value, f"{where}{name}")
    return cls(**values)


def _coerce(default: Any, value: Any, where: str) -> Any:
    if is_dataclass(default):
        return _build(type(default), value, where + ".")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(default, list):  # checked item by item by the section's own check
            if not isinstance(value, list):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has the wrong type ({value!r}); expected {type(default).__name__}") from None
    if where == "otlp.temporality" and value not in ("cumulative", "delta"):
        raise ConfigError(f"otlp.temporality is {value!r}; use \"cumulative\" or \"delta\"")
    return None if value is None else str(value)
