"""`mlpack rollout --status`: per device, the version it runs and its health, from the agent.

A read-only playbook (templates/rollout/status.yml) runs on every device at once: it
reads the installed version (`current`), the agent's Prometheus metrics and the service's
`/readyz`, all on the device's own 127.0.0.1, where the generated units listen. The
control node turns the metrics into a version (the agent's `service_version`) and
request and error counts since the agent started.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, MlpackError

if TYPE_CHECKING:
    from .state import RolloutState

REQUESTS = "mlpack_inference_requests_total"
ERRORS = "mlpack_inference_errors_total"


@dataclass
class DeviceStatus:
    host: str
    version: str | None = None  # what the agent reports running; None: no agent answered
    installed: str | None = None  # where `current` points
    model_sha256: str | None = None
    ready: bool = False
    requests: float = 0.0  # since the agent (re)started
    errors: float = 0.0
    reachable: bool = True

    @property
    def health(self) -> str:
        if not self.reachable:
            return "unreachable"
        if self.version is None and not self.ready:
            return "down"
        if self.version is None:
            return "no agent"
        if not self.ready:
            return "service down"
        if self.installed and self.installed != self.version:
            return "restart pending"  # `current` moved, the processes still run the old one
        if self.errors and self.errors >= self.requests:
            return "failing"
        return "degraded" if self.errors else "ok"


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


def device_status(host: str, data: dict[str, Any] | None) -> DeviceStatus:
    """A device's status from what the status playbook reported for it (None: not reached)."""
    report = (data or {}).get("status") or {}
    if not report:
        return DeviceStatus(host, reachable=False)
    status = DeviceStatus(host, installed=report.get("installed") or None,
                          ready=str(report.get("ready")).lower() == "true")
    if report.get("metrics"):
        status.version, status.model_sha256, status.requests, status.errors = read_agent(report["metrics"])
    return status


def fleet_status(inventory: str | Path, limit: str | None = None, artifact: str | None = None) -> list[DeviceStatus]:
    from .ansible import copy_static_files, inventory_hosts, run_playbook

    hosts = inventory_hosts(inventory, limit)
    if not hosts:
        raise InputError(f"the fleet {inventory} has no hosts{' matching ' + limit if limit else ''}",
                         "add devices to the inventory")
    work = Path(tempfile.mkdtemp(prefix="mlpack-status-"))
    try:
        copy_static_files(work)
        log = work / "ansible.log"
        returncode, per_host = run_playbook(work / "status.yml", inventory, limit, log,
                                            {"mlpack_artifact": artifact} if artifact else None)
        if returncode not in (0, 2, 4) or not per_host:  # 2: a host failed, 4: unreachable
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise MlpackError(f"reading the fleet's status failed: {tail[0]}", "run with the same inventory "
                              "through ansible-playbook to see why")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [device_status(host, per_host.get(host)) for host in hosts]


def format_status(devices: list[DeviceStatus]) -> str:
    rows = [("DEVICE", "VERSION", "HEALTH", "INSTALLED", "REQUESTS", "ERRORS")]
    for d in devices:
        rows.append((d.host, d.version or "-", d.health, d.installed or "-", f"{d.requests:.0f}", f"{d.errors:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    versions: dict[str, int] = {}
    for d in devices:
        versions[d.version or "unknown"] = versions.get(d.version or "unknown", 0) + 1
    lines.append(f"{len(devices)} devices: " + ", ".join(f"{n} on {v}" for v, n in sorted(versions.items())))
    return "\n".join(lines)


def format_last_rollout(state: "RolloutState") -> str:
    """The fleet's last rollout from its state file: how far it got, and who it left behind."""
    line = (f"last rollout: {state.version}, {state.status} ({state.finished_waves} of {len(state.waves)} waves"
            f"{', ' + state.reason if state.reason else ''}), updated {state.updated_at:%Y-%m-%d %H:%M} UTC")
    unreachable = [h for h, record in state.devices.items() if record.get("status") == "unreachable"]
    if unreachable:
        line += f"\n  unreachable in that rollout: {', '.join(unreachable)}"
    if state.status in ("stopped", "interrupted"):
        line += f"\n  continue with: mlpack rollout --resume --fleet {state.fleet}"
    return line
