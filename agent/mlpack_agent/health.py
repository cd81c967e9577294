"""Process and device health as observable instruments, read from /proc and /sys.

Standard library only (no psutil): edge devices get what Linux exposes, and an
instrument simply reports nothing where a file is absent (no thermal zones in a VM).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from opentelemetry.metrics import CallbackOptions, Meter, Observation

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def process_rss_bytes() -> int:
    statm = _read("/proc/self/statm")
    if statm:
        return int(statm.split()[1]) * _PAGE
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def meminfo() -> dict[str, int]:
    text = _read("/proc/meminfo") or ""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = int(parts[0]) * 1024
    return values


class CpuUtilization:
    """Share of CPU time not idle since the previous reading (from /proc/stat)."""

    def __init__(self) -> None:
        self._last = self._totals()

    @staticmethod
    def _totals() -> tuple[int, int] | None:
        text = _read("/proc/stat")
        if not text:
            return None
        fields = [int(v) for v in text.splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def __call__(self) -> float | None:
        now = self._totals()
        last, self._last = self._last, now
        if now is None or last is None or now[0] == last[0]:
            return None
        total, idle = now[0] - last[0], now[1] - last[1]
        return max(0.0, min(1.0, 1.0 - idle / total))


def temperatures(thermal_dir: str) -> dict[str, float]:
    """Degrees Celsius per thermal zone, keyed by the zone's type (e.g. cpu-thermal)."""
    found = {}
    for zone in sorted(Path(thermal_dir).glob("thermal_zone*")):
        raw = _read(zone / "temp")
        if raw is None or not raw.strip().lstrip("-").isdigit():
            continue
        kind = (_read(zone / "type") or zone.name).strip()
        found[f"{kind}/{zone.name}"] = int(raw) / 1000.0
    return found


def register_health(meter: Meter, disk_path: str, thermal_dir: str, spool=None) -> None:
    cpu = CpuUtilization()

    def process_memory(options: CallbackOptions):
        yield Observation(process_rss_bytes())

    def process_cpu(options: CallbackOptions):
        t = os.times()
        yield Observation(t.user + t.system)

    def host_cpu(options: CallbackOptions):
        value = cpu()
        if value is not None:
            yield Observation(value)

    def host_memory(options: CallbackOptions):
        info = meminfo()
        if "MemAvailable" in info:
            yield Observation(info["MemAvailable"], {"state": "available"})
        if "MemTotal" in info:
            yield Observation(info["MemTotal"], {"state": "total"})

    def host_disk(options: CallbackOptions):
        try:
            usage = shutil.disk_usage(disk_path)
        except OSError:
            return
        yield Observation(usage.free, {"state": "free", "path": disk_path})
        yield Observation(usage.total, {"state": "total", "path": disk_path})

    def host_load(options: CallbackOptions):
        try:
            yield Observation(os.getloadavg()[0])
        except OSError:
            return

    def host_temperature(options: CallbackOptions):
        for zone, celsius in temperatures(thermal_dir).items():
            yield Observation(celsius, {"zone": zone})

    meter.create_observable_gauge("mlpack.agent.process.memory.rss", [process_memory], unit="By",
                                  description="Resident memory of the agent process")
    meter.create_observable_counter("mlpack.agent.process.cpu.time", [process_cpu], unit="s",
                                    description="CPU time used by the agent process")
    meter.create_observable_gauge("mlpack.host.cpu.utilization", [host_cpu], unit="1",
                                  description="Host CPU busy share since the last collection")
    meter.create_observable_gauge("mlpack.host.memory", [host_memory], unit="By",
                                  description="Host memory, by state (available, total)")
    meter.create_observable_gauge("mlpack.host.disk", [host_disk], unit="By",
                                  description="Disk space of the agent's volume, by state (free, total)")
    meter.create_observable_gauge("mlpack.host.load.1m", [host_load], unit="1",
                                  description="One-minute load average")
    meter.create_observable_gauge("mlpack.host.temperature", [host_temperature], unit="Cel",
                                  description="Temperature per thermal zone, where /sys exposes it")

    if spool is not None:
        def buffer_size(options: CallbackOptions):
            yield Observation(spool.size_bytes)

        def buffer_dropped(options: CallbackOptions):
            yield Observation(spool.dropped_points)

        def buffer_batches(options: CallbackOptions):
            yield Observation(spool.batches)

        meter.create_observable_gauge("mlpack.agent.buffer.size", [buffer_size], unit="By",
                                      description="Bytes waiting in the OTLP disk buffer")
        meter.create_observable_gauge("mlpack.agent.buffer.batches", [buffer_batches], unit="{batch}",
                                      description="OTLP requests waiting in the disk buffer")
        meter.create_observable_counter("mlpack.agent.buffer.dropped", [buffer_dropped], unit="{point}",
                                        description="Data points dropped because the disk buffer was full")
