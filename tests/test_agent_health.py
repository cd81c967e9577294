"""Device health comes from /proc and /sys; absent files mean no data, never an error."""

from __future__ import annotations

import time
from pathlib import Path

from mlpack_agent.health import CpuUtilization, meminfo, process_rss_bytes, temperatures


def test_temperatures_read_every_thermal_zone(tmp_path: Path) -> None:
    for i, (kind, millis) in enumerate([("cpu-thermal", "48500"), ("gpu-thermal", "51000")]):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millis + "\n")
    (tmp_path / "thermal_zone9").mkdir()  # a zone without a reading is skipped
    assert temperatures(str(tmp_path)) == {"cpu-thermal/thermal_zone0": 48.5, "gpu-thermal/thermal_zone1": 51.0}
    assert temperatures(str(tmp_path / "absent")) == {}


def test_process_and_host_readings_are_plausible() -> None:
    assert 5 * 2**20 < process_rss_bytes() < 4 * 2**30
    info = meminfo()
    assert 0 < info["MemAvailable"] <= info["MemTotal"]
    cpu = CpuUtilization()
    time.sleep(0.05)
    value = cpu()
    assert value is None or 0.0 <= value <= 1.0
