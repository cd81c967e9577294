"""The device guard (templates/rollout/files/guard.py) on a device folder, without Ansible:
a switch that is not confirmed in time is undone by the device itself, at once on a start
after its deadline, and the systemd units run that check before every start, and restart
after a crash within limits."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpack.resources import data_dir

GUARD = data_dir("templates") / "rollout" / "files" / "guard.py"


def guard(root: Path, *args: str, check: bool = True) -> dict:
    done = subprocess.run([sys.executable, str(GUARD), args[0], str(root), *args[1:]], capture_output=True,
                          text=True, timeout=30)
    if check:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return {"returncode": done.returncode, "stderr": done.stderr}


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A device on v1 with v2 unpacked beside it."""
    root = tmp_path / "device"
    for version in ("v1", "v2"):
        (root / "versions" / version).mkdir(parents=True)
        (root / "versions" / version / "manifest.json").write_text(version)
    os.symlink("versions/v1", root / "current")
    return root


def current(root: Path) -> str:
    return os.readlink(root / "current")


def wait_until(predicate, timeout_s: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def switch(root: Path, timeout_s: float, restart: list[list[str]] | None = None) -> dict:
    return guard(root, "switch", "v2", "--previous", "v1", "--timeout", str(timeout_s),
                 "--restart", json.dumps(restart or []))


def kill_watcher(root: Path) -> None:
    try:
        os.kill(int((root / "rollout" / "watcher.pid").read_text()), 9)
    except (OSError, ValueError):
        pass


def test_a_confirmed_switch_stays(device: Path) -> None:
    switch(device, timeout_s=1.0)
    assert current(device) == "versions/v2"
    assert guard(device, "confirm", "v2") == {"confirmed": True}
    time.sleep(1.6)  # past the deadline: the watcher sees the confirmation and leaves
    assert current(device) == "versions/v2"
    assert json.loads((device / "rollout" / "switch.json").read_text())["state"] == "confirmed"


def test_an_unconfirmed_switch_is_reverted_and_restarted_by_the_device_within_its_timeout(device: Path) -> None:
    restarted = device / "restarted"
    switch(device, timeout_s=1.5, restart=[[sys.executable, "-c", f"open({str(restarted)!r}, 'w').write('v1')"]])
    waited = wait_until(lambda: restarted.exists(), timeout_s=10)
    assert 1.0 <= waited <= 1.5 + 2.0  # the deadline, plus the watcher's one-second poll and the restart
    assert current(device) == "versions/v1"
    assert "reverted v2 -> v1: not confirmed within 2 s" in (device / "rollout" / "guard.log").read_text()
    # The health gate that comes too late is told so, and fails.
    late = guard(device, "confirm", "v2", check=False)
    assert late["returncode"] != 0 and "already reverted by the device" in late["stderr"]


def test_a_start_after_the_deadline_reverts_before_anything_runs(device: Path) -> None:
    switch(device, timeout_s=0.5)
    kill_watcher(device)  # the power went: no watcher survives
    time.sleep(0.7)
    assert current(device) == "versions/v2"  # the half-finished switch is still on disk
    assert guard(device, "boot") == {"reverted": True}
    assert current(device) == "versions/v1"


def test_a_start_within_the_deadline_keeps_the_new_version_and_watches_it_again(device: Path) -> None:
    switch(device, timeout_s=2.0)
    kill_watcher(device)
    assert guard(device, "boot") == {"pending": True}  # the rollout's own restart, or a quick reboot
    assert current(device) == "versions/v2"
    wait_until(lambda: current(device) == "versions/v1", timeout_s=6)  # the new watcher reverts it


def test_a_device_clock_far_behind_waits_no_longer_than_the_timeout(device: Path) -> None:
    switch(device, timeout_s=1.0)
    kill_watcher(device)
    state_file = device / "rollout" / "switch.json"
    state = json.loads(state_file.read_text())
    state["deadline"] = time.time() + 10 * 365 * 86400  # booted with a clock years behind
    state_file.write_text(json.dumps(state))
    guard(device, "boot")
    wait_until(lambda: current(device) == "versions/v1", timeout_s=5)


def test_the_control_nodes_rollback_ends_the_switch(device: Path) -> None:
    switch(device, timeout_s=30)
    assert guard(device, "revert", "--reason", "probe failed") == {"reverted": True, "current": "v1"}
    assert current(device) == "versions/v1"
    assert guard(device, "status")["switch"]["state"] == "reverted"
    assert guard(device, "revert") == {"reverted": False, "current": "v1"}  # nothing pending: no-op


def test_inspect_reads_the_device_and_writes_nothing(device: Path) -> None:
    before = sorted(p.relative_to(device).as_posix() for p in device.rglob("*"))
    found = guard(device, "inspect", "v2")
    assert found["current"] == "v1" and found["switch"] == {} and found["have_version"] is True
    assert found["free_path"] == str(device / "versions") and found["free_bytes"] > 0
    assert sorted(p.relative_to(device).as_posix() for p in device.rglob("*")) == before
    # A first install: no versions/ yet, measured at the nearest folder that exists.
    fresh = guard(device / "new-root", "inspect", "v1")
    assert (fresh["current"], fresh["have_version"], fresh["free_path"]) == ("", False, str(device))
    assert not (device / "new-root").exists()


def test_an_unpack_goes_through_a_partial_folder_and_lands_whole(device: Path) -> None:
    leftover = device / "versions" / ".v3.partial" / "model.onnx"
    leftover.parent.mkdir()
    leftover.write_text("cut short")
    assert guard(device, "prepare", "v3") == {"partial": str(leftover.parent)}
    assert list(leftover.parent.iterdir()) == []  # the earlier attempt is gone
    (leftover.parent / "manifest.json").write_text("v3")
    guard(device, "place", "v3")
    assert (device / "versions" / "v3" / "manifest.json").read_text() == "v3"
    assert not leftover.parent.exists()


def test_a_switch_with_install_leaves_the_guard_the_watcher_and_the_units_run(device: Path) -> None:
    guard(device, "switch", "v2", "--previous", "v1", "--timeout", "30", "--install")
    installed = device / "rollout" / "guard.py"
    assert installed.read_bytes() == GUARD.read_bytes() and os.stat(installed).st_mode & 0o777 == 0o755
    watcher = int((device / "rollout" / "watcher.pid").read_text())
    assert str(installed).encode() in Path(f"/proc/{watcher}/cmdline").read_bytes().split(b"\0")
    guard(device, "confirm", "v2")


def test_prune_keeps_the_versions_named_and_the_current_one(device: Path) -> None:
    for name in ("v0", "v3", ".v4.partial"):
        (device / "versions" / name).mkdir()
    assert guard(device, "prune", "--keep", "v2", "--keep", "") == {"removed": ["v0", "v3"]}
    assert sorted(p.name for p in (device / "versions").iterdir()) == [".v4.partial", "v1", "v2"]


# -- the systemd units -----------------------------------------------------------------


def _unit_texts() -> dict[str, str]:
    from mlpack.render.iac import render_iac

    from .manifests import fixed_context

    return {Path(path).name: text for path, text in render_iac(fixed_context("arm-edge")).items()
            if path.endswith(".service")}


def _units() -> dict[str, configparser.ConfigParser]:
    units = {}
    for name, text in _unit_texts().items():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read_string(text)
        units[name] = parser
    return units


@pytest.mark.requires_tool("systemd-analyze", hint="apt-get install systemd")
def test_the_units_restart_after_a_crash_within_limits_and_run_the_guard_first(tmp_path: Path) -> None:
    from .iac_support import systemd_verify

    units = _units()
    assert sorted(units) == ["mlpack-agent.service", "mlpack-model.service"]
    for name, unit in units.items():
        assert unit["Service"]["Restart"] == "on-failure", name
        assert int(unit["Service"]["RestartSec"]) >= 1, name
        # At most 5 starts in 5 minutes, then the unit stays failed instead of looping.
        assert (unit["Unit"]["StartLimitIntervalSec"], unit["Unit"]["StartLimitBurst"]) == ("300", "5"), name
        pre = unit["Service"]["ExecStartPre"]
        assert pre.startswith("+-") and pre.endswith("/rollout/guard.py boot /opt/mlpack/golden-model-arm-edge")
        (tmp_path / name).write_text(_unit_texts()[name])
    assert systemd_verify(sorted(tmp_path.glob("*.service"))) == []  # systemd itself reads them so
    # The crash itself is injected under a real systemd: tests/test_systemd_units.py.


def test_the_units_boot_check_reverts_an_unconfirmed_switch(device: Path) -> None:
    """The very command line of ExecStartPre, pointed at this device folder."""
    pre = _units()["mlpack-agent.service"]["Service"]["ExecStartPre"]
    argv = pre.lstrip("+-").replace("/opt/mlpack/golden-model-arm-edge", str(device)).split()
    assert argv[0] == f"{device}/venv/bin/python3"
    (device / "rollout").mkdir()
    (device / "rollout" / "guard.py").write_bytes(GUARD.read_bytes())  # as the rollout installs it
    switch(device, timeout_s=0.2)
    kill_watcher(device)
    time.sleep(0.4)
    done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert current(device) == "versions/v1"
