"""The agent's configuration: a JSON file (rendered into each artifact) plus env overrides.

Example `agent.json`:

    {
      "socket": "/tmp/mlpack-agent.sock",
      "resource": {"service.name": "digits-x86-cpu", "mlpack.model.name": "digits"},
      "prometheus": {"enabled": true, "host": "0.0.0.0", "port": 9464},
      "otlp": {"endpoint": "http://collector:4318", "interval_s": 15},
      "buffer": {"dir": "/var/lib/mlpack-agent", "max_bytes": 67108864},
      "health": {"interval_s": 15, "disk_path": "/"}
    }

Environment variables override the file: MLPACK_AGENT_SOCKET, MLPACK_AGENT_PROMETHEUS_PORT,
MLPACK_AGENT_PROMETHEUS_HOST, MLPACK_AGENT_OTLP_ENDPOINT (else OTEL_EXPORTER_OTLP_ENDPOINT),
MLPACK_AGENT_OTLP_INTERVAL_S, MLPACK_AGENT_BUFFER_DIR, MLPACK_AGENT_BUFFER_MAX_BYTES,
MLPACK_AGENT_BUFFER_FSYNC_INTERVAL_S.
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
class PrometheusConfig:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 9464


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
    resource: dict[str, str] = field(default_factory=dict)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log_level: str = "INFO"
    # Distinct values kept per attribute (error kind, class) before folding into "other".
    max_label_values: int = 200


_ENV = {
    "MLPACK_AGENT_SOCKET": ("socket",),
    "MLPACK_AGENT_PROMETHEUS_HOST": ("prometheus", "host"),
    "MLPACK_AGENT_PROMETHEUS_PORT": ("prometheus", "port"),
    "MLPACK_AGENT_OTLP_ENDPOINT": ("otlp", "endpoint"),
    "MLPACK_AGENT_OTLP_INTERVAL_S": ("otlp", "interval_s"),
    "MLPACK_AGENT_BUFFER_DIR": ("buffer", "dir"),
    "MLPACK_AGENT_BUFFER_MAX_BYTES": ("buffer", "max_bytes"),
    "MLPACK_AGENT_BUFFER_FSYNC_INTERVAL_S": ("buffer", "fsync_interval_s"),
    "MLPACK_AGENT_LOG_LEVEL": ("log_level",),
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
    return _build(AgentConfig, data, "")


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
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has the wrong type ({value!r}); expected {type(default).__name__}") from None
    if where == "otlp.temporality" and value not in ("cumulative", "delta"):
        raise ConfigError(f"otlp.temporality is {value!r}; use \"cumulative\" or \"delta\"")
    return None if value is None else str(value)
