"""`mlpack rollout --status`: per device, the version it runs and its health, from the agent.

The control node asks each device's mlpack agent (Prometheus endpoint, port 9464 unless
the inventory says `mlpack_agent_port`) and service (`/readyz`, `mlpack_service_port`)
directly over HTTP, all devices at once. The version is the agent's `service_version`
(`target_info`), which it takes from the running version's agent.json.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .release import DEFAULT_AGENT_PORT, DEFAULT_SERVICE_PORT

REQUESTS = "mlpack_inference_requests_total"
ERRORS = "mlpack_inference_errors_total"


@dataclass
class DeviceStatus:
    host: str
    address: str
    version: str | None = None  # None: the agent did not answer
    model_sha256: str | None = None
    ready: bool = False
    requests: float = 0.0  # since the agent (re)started
    errors: float = 0.0

    @property
    def health(self) -> str:
        if self.version is None and not self.ready:
            return "down"
        if self.version is None:
            return "no agent"
        if not self.ready:
            return "service down"
        if self.errors and self.errors >= self.requests:
            return "failing"
        return "degraded" if self.errors else "ok"


def device_address(host: str, hostvars: dict[str, Any]) -> str:
    if hostvars.get("ansible_connection") == "local":
        return "127.0.0.1"
    return str(hostvars.get("ansible_host") or host)


def read_agent(text: str) -> tuple[str | None, str | None, float, float]:
    """(version, model sha256, requests, errors) from the agent's Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    version = sha = None
    requests = errors = 0.0
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    for sample in samples:
        if sample.name == "target_info":
            version = sample.labels.get("service_version")
            sha = sample.labels.get("mlpack_model_sha256")
    for sample in samples:
        if sample.labels.get("service_version") != version:
            continue
        if sample.name == REQUESTS:
            requests += sample.value
        elif sample.name == ERRORS:
            errors += sample.value
    return version, sha, requests, errors


def device_status(host: str, hostvars: dict[str, Any], timeout_s: float = 3.0) -> DeviceStatus:
    address = device_address(host, hostvars)
    status = DeviceStatus(host, address)
    agent_port = int(hostvars.get("mlpack_agent_port", DEFAULT_AGENT_PORT))
    service_port = int(hostvars.get("mlpack_service_port", DEFAULT_SERVICE_PORT))
    text = _get(f"http://{address}:{agent_port}/metrics", timeout_s)
    if text is not None:
        status.version, status.model_sha256, status.requests, status.errors = read_agent(text)
    status.ready = _get(f"http://{address}:{service_port}/readyz", timeout_s) is not None
    return status


def fleet_status(inventory: str | Path, limit: str | None = None, timeout_s: float = 3.0) -> list[DeviceStatus]:
    from .ansible import inventory_hosts

    hosts = inventory_hosts(inventory, limit)
    if not hosts:
        raise InputError(f"the fleet {inventory} has no hosts{' matching ' + limit if limit else ''}",
                         "add devices to the inventory")
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
        return list(pool.map(lambda item: device_status(item[0], item[1], timeout_s), hosts.items()))


def format_status(devices: list[DeviceStatus]) -> str:
    rows = [("DEVICE", "VERSION", "HEALTH", "REQUESTS", "ERRORS")]
    for d in devices:
        rows.append((d.host, d.version or "-", d.health, f"{d.requests:.0f}", f"{d.errors:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    versions: dict[str, int] = {}
    for d in devices:
        versions[d.version or "unknown"] = versions.get(d.version or "unknown", 0) + 1
    lines.append(f"{len(devices)} devices: " + ", ".join(f"{n} on {v}" for v, n in sorted(versions.items())))
    return "\n".join(lines)


def _get(url: str, timeout_s: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return None
