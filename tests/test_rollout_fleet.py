"""`mlpack rollout` with Ansible on a simulated fleet of six devices (see tests/fleet.py).

Each device is its own root folder with a runner and the real mlpack agent on their own
loopback ports; ansible-playbook reaches them through the local connection.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpack.build import BuildRequest, build
from mlpack.cli import app
from mlpack.artifact import Artifact
from mlpack.model.info import sha256_file
from mlpack.progress import Progress
from mlpack.rollout.ansible import run_rollout
from mlpack.rollout.release import read_release
from mlpack.rollout.status import fleet_status
from mlpack.rollout.waves import plan_waves

from .faults import NEEDS_TMPFS, mount_tmpfs, nodeid, record_fault, unmount
from .fleet import SSHD, SimulatedFleet, SshServer, stop_processes
from .manifests import edit_json, read_history
from .models import linear_model, linear_reference
from .pyramid import heavy

pytestmark = pytest.mark.requires_tool("ansible", module=True, hint="ansible-core, in mlpack's edge extra (make setup)")

FLEET_SIZE = 6
NAME = "fleet-model"


def _build(model: Path, out: Path) -> Path:
    return build(BuildRequest(model=model, target="arm-edge", out=out, name=NAME), Progress(quiet=True)).path


def batch_dependent_model(path: Path) -> Path:
    """Loads fine and takes x [batch, 64] like the good models, but only answers batches of
    an even size: Reshape to [-1, 128]. A single-row request (the probe) fails."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["pairs"]),
         helper.make_node("ReduceSum", ["pairs", "axes"], ["y"], keepdims=0)],
        "batch-dependent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["half"])],
        initializer=[numpy_helper.from_array(np.array([-1, 128], dtype=np.int64), "shape"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def with_swapped_model(good: Path, model: Path, dest: Path) -> Path:
    """A copy of a built artifact serving another model, sealed again so it verifies.

    `mlpack build` runs every model at batch 1 and refuses one that fails, so an artifact
    whose model fails on the device cannot come out of a build; this makes one the way a
    bad build would look: a consistent manifest, a new version, a model that breaks.
    """
    import json

    shutil.copytree(good, dest)
    sha = sha256_file(model)
    for place in ("model/model.onnx", "bento/src/model.onnx"):
        shutil.copyfile(model, dest / place)
    runtime = dest / "bento/src/runtime.json"
    config = json.loads(runtime.read_text())
    config["labels"]["model_sha256"] = sha
    runtime.write_text(json.dumps(config, indent=2))

    def reseal(manifest: dict) -> None:
        manifest["model"]["sha256"] = sha
        manifest["image"]["tag"] = f"{manifest['mlpack_version']}-{sha[:12]}"
        agent = dest / "agent/agent.json"
        agent_config = json.loads(agent.read_text())
        agent_config["resource"]["service.version"] = manifest["image"]["tag"]
        agent_config["resource"]["mlpack.model.sha256"] = sha
        agent.write_text(json.dumps(agent_config, indent=2))

    edit_json(dest, reseal, rehash=True)
    assert not Artifact.open(dest).problems()
    return dest


@pytest.fixture(scope="module")
@heavy
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("rollout-artifacts")
    v1 = _build(linear_model(base / "v1.onnx", features=64, outputs=3, seed=1), base / "v1")
    v2 = _build(linear_model(base / "v2.onnx", features=64, outputs=3, seed=2), base / "v2")
    bad = with_swapped_model(v2, batch_dependent_model(base / "bad.onnx"), base / "bad" / v2.name)
    return {"v1": v1, "v2": v2, "bad": bad, "v2_model": base / "v2.onnx"}


@pytest.fixture(scope="module")
@heavy
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """Real SSH to the first and last device when OpenSSH's server is installed."""
    if SSHD is None:
        yield None
        return
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
@heavy
def fleet(tmp_path: Path, artifacts: dict[str, Path], sshd: SshServer | None):
    fleet = SimulatedFleet(tmp_path / "devices", FLEET_SIZE, f"{NAME}-arm-edge", ssh=sshd)
    try:
        fleet.install(artifacts["v1"])
        yield fleet
    finally:
        fleet.stop()


def _rollout(artifact: Path, fleet: SimulatedFleet, log: Path, inventory: Path | None = None):
    result = run_rollout(artifact, inventory or fleet.inventory, health_timeout_s=30, log=log)
    print(log.read_text()[-6000:], file=sys.stderr)  # shown by pytest when a test fails
    return result


# Without sshd every simulated device is reached through Ansible's local connection instead.
@pytest.mark.requires_tool("sshd", hint="apt-get install openssh-server")
def test_the_canary_and_the_last_device_are_reached_over_real_ssh(sshd: SshServer | None) -> None:
    import subprocess

    assert sshd is not None, "sshd is installed, but tests/fleet.py did not find it"

    done = subprocess.run(["ssh", "-i", str(sshd.key), "-p", str(sshd.port), "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                           f"{sshd.user}@127.0.0.1", "echo", "reached"], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "reached", done.stderr


def test_a_good_artifact_reaches_every_device(
    fleet: SimulatedFleet, artifacts: dict[str, Path], sshd: SshServer | None
) -> None:
    v1, v2 = read_release(artifacts["v1"]).version, read_release(artifacts["v2"]).version
    runner = CliRunner()

    done = runner.invoke(app, ["rollout", str(artifacts["v2"]), "--fleet", str(fleet.inventory),
                               "--health-timeout", "30"])

    assert done.exit_code == 0, done.output
    assert f"{NAME}-arm-edge {v2}: {FLEET_SIZE} updated" in done.output
    assert read_history(artifacts["v2"])["rollouts"][-1]["outcome"] == f"{FLEET_SIZE} updated"
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    expected = linear_reference(artifacts["v2_model"], x)
    for device in fleet.devices:
        assert device.current_version == v2
        assert device.installed_versions() == sorted([v1, v2])  # the old one stays for rollback
        assert device.served()["version"] == v2
        status, body = device.predict({"x": x.tolist()})
        assert status == 200
        np.testing.assert_allclose(np.array(body["outputs"]["y"]), expected, rtol=1e-5, atol=1e-5)
    # --status reads the same from every device's agent (the probe is its one request).
    shown = runner.invoke(app, ["rollout", "--status", "--fleet", str(fleet.inventory)])
    assert shown.exit_code == 0, shown.output
    assert f"{FLEET_SIZE} devices: {FLEET_SIZE} on {v2}" in shown.output
    rows = [line.split() for line in shown.output.splitlines() if line.startswith("device-")]
    assert [row[0] for row in rows] == [d.name for d in fleet.devices]
    assert all(row[1:4] == [v2, "ok", v2] and int(row[4]) >= 1 and row[5] == "0" for row in rows), rows
    # The rollout restarted the first and last device over SSH (when sshd is installed).
    assert fleet.over_ssh == ([] if sshd is None else ["device-00", f"device-{FLEET_SIZE - 1:02d}"])
    assert [d.name for d in fleet.devices if d.restarted_over_ssh()] == fleet.over_ssh
    # Rolling the same artifact out again changes nothing (two devices in one wave, to keep it
    # short; that unchanged devices let the rollout go on to the next wave, the unreachable
    # test's --resume checks: device-01 unchanged in wave 2, then wave 3).
    pids = {d.name: d.pids() for d in fleet.devices[:2]}
    again = run_rollout(artifacts["v2"], fleet.inventory, limit="device-00,device-01", waves=["100%"],
                        health_timeout_s=30)
    assert again.ok and again.hosts == ["device-00", "device-01"]
    assert {again.status_of(h) for h in again.hosts} == {"unchanged"}
    assert {d.name: d.pids() for d in fleet.devices[:2]} == pids


def test_a_failing_artifact_stops_in_the_first_wave_and_rolls_back(
    fleet: SimulatedFleet, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    v1, bad = read_release(artifacts["v1"]).version, read_release(artifacts["bad"]).version
    canary, others = fleet.devices[0], fleet.devices[1:]
    pids_before = {d.name: d.pids() for d in others}

    result = _rollout(artifacts["bad"], fleet, tmp_path / "ansible.log")

    assert result.returncode != 0 and not result.ok
    record = result.devices[canary.name]
    assert record["status"] == "rolled_back" and record["from"] == v1 and record["to"] == bad
    assert "probe" in record["reason"]
    # The canary is back on the old version and serving it.
    assert canary.current_version == v1
    assert canary.restarted_over_ssh() == (canary.name in fleet.over_ssh)
    assert canary.served()["version"] == v1
    assert canary.predict({"x": np.zeros((1, 64)).tolist()})[0] == 200
    # Nobody else was touched: same processes, same single version, nothing unpacked.
    for device in others:
        assert result.status_of(device.name) == "untouched"
        assert device.current_version == v1
        assert device.installed_versions() == [v1]
        assert device.pids() == pids_before[device.name]
    # --status: everyone on the old version; a device whose service died shows it.
    stop_processes([fleet.devices[-1].root / "run" / "service.pid"])
    statuses = {s.host: s for s in fleet_status(fleet.inventory)}
    assert {s.version for s in statuses.values()} == {v1}
    assert statuses[canary.name].health == "ok" and statuses[canary.name].installed == v1
    assert statuses[fleet.devices[-1].name].health == "service down"
    record_fault("failed-health-gate", nodeid(),
                 "an artifact whose model loads but fails on a one-row request (the gate's probe)",
                 f"{canary.name}: rolled_back ({record['reason']})",
                 lost=sum(d.complete_version() != v1 for d in fleet.devices),
                 detail=f"the canary rolled back and serves the old version; the {FLEET_SIZE - 1} others untouched")


def _inventory_with(fleet: SimulatedFleet, **changes: dict) -> dict:
    """Rewrite the fleet's inventory (same file: the same fleet) with some hosts' variables
    changed; returns the original to restore."""
    import yaml

    original = yaml.safe_load(fleet.inventory.read_text())
    inventory = yaml.safe_load(fleet.inventory.read_text())
    for host, values in changes.items():
        inventory["all"]["hosts"][host].update(values)
    fleet.inventory.write_text(yaml.safe_dump(inventory))
    return original


def _unreachable_vars() -> dict:
    from .fleet import free_ports

    return {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_ports(1)[0],
            "ansible_ssh_common_args": "-o BatchMode=yes -o ConnectTimeout=5"}  # a port nobody listens on


def _line(output: str, text: str) -> str:
    return next(line.strip() for line in output.splitlines() if text in line)


def test_an_unreachable_device_in_the_second_wave_stops_the_rollout_before_the_third(
    fleet: SimulatedFleet, artifacts: dict[str, Path]
) -> None:
    import yaml

    v1, v2 = read_release(artifacts["v1"]).version, read_release(artifacts["v2"]).version
    lost = fleet.devices[2]
    original = _inventory_with(fleet, **{lost.name: _unreachable_vars()})
    assert [len(wave) for wave in plan_waves([d.name for d in fleet.devices], [1, "50%", "100%"])] == [1, 3, 2]
    third_wave = fleet.devices[4:]
    pids = {d.name: d.pids() for d in third_wave}
    runner = CliRunner()

    # Waves of 1, 3 and 2 devices: the second wave has the unreachable device and two others.
    done = runner.invoke(app, ["rollout", str(artifacts["v2"]), "--fleet", str(fleet.inventory),
                               "--waves", "1,50%,100%", "--health-timeout", "30"])

    assert done.exit_code == 1, done.output
    stopped = _line(done.output, "stopped after")
    assert f"rollout of {v2} stopped after wave 2 of 3: device-02 unreachable (1 of 3, --max-unreachable 0)" in stopped
    assert "  device-02: unreachable" in done.output
    assert [d.current_version for d in fleet.devices[:4]] == [v2, v2, v1, v2]
    for device in third_wave:  # never touched: same processes, one version
        assert device.current_version == v1 and device.installed_versions() == [v1]
        assert device.pids() == pids[device.name]
    # --status lists it too, with how to go on.
    shown = runner.invoke(app, ["rollout", "--status", "--fleet", str(fleet.inventory)])
    assert shown.exit_code == 0, shown.output
    assert _line(shown.output, "device-02").split()[1:3] == ["-", "unreachable"]
    assert "unreachable in that rollout: device-02" in shown.output
    assert f"continue with: mlpack rollout --resume --fleet {fleet.inventory}" in shown.output

    # The device is back: --resume runs wave 2 again (the two updated ones are left alone) and wave 3.
    fleet.inventory.write_text(yaml.safe_dump(original))
    resumed = runner.invoke(app, ["rollout", "--resume", "--fleet", str(fleet.inventory)])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming the rollout of {v2} at wave 2 of 3" in resumed.output
    assert "device-01: unchanged" in resumed.output and "device-02: updated" in resumed.output
    assert {d.current_version for d in fleet.devices} == {v2}
    record_fault("unreachable-in-wave", nodeid(),
                 f"device-02 of {FLEET_SIZE} behind an SSH port nobody listens on; waves of 1, 3 and 2 devices",
                 stopped, lost=sum(d.complete_version() is None for d in fleet.devices),
                 detail="waves 1 and 2 done except device-02, wave 3 untouched (same processes); "
                        "--resume once it was back updated it and wave 3")


@pytest.mark.requires_tool("sshd", hint="apt-get install openssh-server")
def test_devices_lost_between_switch_and_health_gate_revert_by_themselves(
    tmp_path: Path, artifacts: dict[str, Path], sshd: SshServer | None
) -> None:
    import time

    from .fleet import power_on

    v1 = read_release(artifacts["v1"]).version
    fleet = SimulatedFleet(tmp_path / "devices", FLEET_SIZE, f"{NAME}-arm-edge", ssh=sshd,
                           ssh_devices=(0, 1, FLEET_SIZE - 1), links=(0, 1))
    confirm_timeout = 20.0
    try:
        fleet.install(artifacts["v1"])
        cut_off, powered_off = fleet.devices[0], fleet.devices[1]
        (cut_off.root / "fault").write_text("cut")  # off the network right after its restart
        (powered_off.root / "fault").write_text("power")  # and this one loses power too
        others = {d.name: d.pids() for d in fleet.devices[2:]}

        result = run_rollout(artifacts["v2"], fleet.inventory, waves=[2, "100%"], health_timeout_s=10,
                             confirm_timeout_s=confirm_timeout, log=tmp_path / "ansible.log")
        print((tmp_path / "ansible.log").read_text()[-4000:], file=sys.stderr)

        assert [result.status_of(d.name) for d in (cut_off, powered_off)] == ["unreachable", "unreachable"]
        assert result.reason.startswith("wave 1 of 2: device-00, device-01 unreachable")
        assert {d.name: d.pids() for d in fleet.devices[2:]} == others
        # The one still running reverts itself within the timeout, and serves v1 again.
        switched_at = cut_off.switch()["switched_at"]
        fleet.wait_serving_on([cut_off], v1, timeout_s=confirm_timeout + 15)
        switch = cut_off.switch()
        reverted_after = switch["reverted_at"] - switched_at
        # Reverted by the device's own watcher at the deadline, not before; how long after it
        # depends on the machine's load (wait_serving_on above bounds it), so no wall-clock limit.
        assert switch["state"] == "reverted" and switch["reverted_at"] >= switch["deadline"]
        assert switch["deadline"] - switched_at == pytest.approx(confirm_timeout, abs=1)
        assert cut_off.complete_version() == v1
        # The one that lost power is off; it boots after the deadline on v1, complete.
        assert powered_off.served() is None and powered_off.switch()["state"] == "pending"
        time.sleep(max(0.0, powered_off.switch()["deadline"] - time.time()) + 0.5)
        power_on(powered_off.root)
        fleet.wait_serving_on([powered_off], v1)
        assert powered_off.complete_version() == v1 and powered_off.switch()["state"] == "reverted"
        assert "found at start" in powered_off.guard_log()
    finally:
        fleet.stop()
    record_fault("cut-off-before-gate", nodeid(),
                 "the canary's SSH link cut right after its restart onto the new version (a TCP proxy "
                 f"closed); --confirm-timeout {confirm_timeout:.0f}",
                 "rollout: device-00 unreachable, stopped after wave 1; device's guard.log: "
                 + next(li for li in cut_off.guard_log().splitlines() if "reverted" in li).split(" ", 1)[1],
                 lost=int(cut_off.complete_version() != v1),
                 detail=f"reverted {reverted_after:.1f} s after the switch and restarted on {v1}; "
                        f"the {FLEET_SIZE - 2} other devices untouched")
    record_fault("reboot-during-switch", nodeid(),
                 "the second device's processes and guard watcher killed (power cut) right after its switch, "
                 "link cut; booted again after the deadline",
                 next(li for li in powered_off.guard_log().splitlines() if "found at start" in li).split(" ", 1)[1],
                 lost=int(powered_off.complete_version() != v1),
                 detail="the ExecStartPre guard check reverted it before the service started; it serves the "
                        "old version, every shipped file matching its manifest")


def test_resume_after_the_control_node_is_killed_finishes_the_rollout(
    fleet: SimulatedFleet, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import time

    from mlpack.rollout.state import RolloutState, fleet_dir

    v2 = read_release(artifacts["v2"]).version
    third_wave = fleet.devices[2:5]
    command = [str(Path(sys.executable).parent / "mlpack"), "rollout", str(artifacts["v2"]),
               "--fleet", str(fleet.inventory), "--health-timeout", "30"]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    runner = CliRunner()
    try:
        # Wait until wave 3 is switching its devices, then refuse a second rollout to the fleet.
        deadline = time.monotonic() + 240
        while not any(d.switch().get("to") == v2 for d in third_wave):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.1)
        second = runner.invoke(app, ["rollout", str(artifacts["v2"]), "--fleet", str(fleet.inventory)])
        assert second.exit_code == 2
        refused = second.output.strip().splitlines()[-1]
        assert f"a rollout to {fleet.inventory} is already running (pid {first.pid}" in refused
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the control node dies: mlpack and ansible-playbook at once
        first.wait(30)
    state = RolloutState.load(fleet_dir(fleet.inventory))
    assert state.status == "running" and state.finished_waves == 2  # as the dead process left it
    # Ansible's workers run in sessions of their own: any still finishing a task on a device
    # keep the fleet locked (and a resume refused) until they end.
    wait_unlocked(fleet_dir(fleet.inventory) / "lock", timeout_s=120)

    resumed = runner.invoke(app, ["rollout", "--resume", "--fleet", str(fleet.inventory)])

    assert resumed.exit_code == 0, resumed.output
    assert f"resuming the rollout of {v2} at wave 3 of 4" in resumed.output
    assert f"{NAME}-arm-edge {v2}: {FLEET_SIZE} updated" in resumed.output
    for device in fleet.devices:
        assert device.current_version == v2 and device.served()["version"] == v2
        assert device.switch()["state"] == "confirmed"
    assert RolloutState.load(fleet_dir(fleet.inventory)).status == "finished"
    record_fault("control-node-killed", nodeid(),
                 "SIGKILL to mlpack and its ansible-playbook (one process group) while wave 3 of 4 switched "
                 "its devices; then `mlpack rollout --resume`",
                 _line(resumed.output, "resuming the rollout"),
                 lost=sum(d.current_version != v2 for d in fleet.devices),
                 detail="wave 3 ran again (its devices half-way through were switched again and confirmed), "
                        f"then wave 4; all {FLEET_SIZE} devices on the new version")
    record_fault("second-rollout", nodeid(), "a second `mlpack rollout` to the same fleet during wave 3",
                 refused, lost=int(state.pid != first.pid),  # the state stayed the first rollout's
                 detail="exit 2, nothing started; the first rollout went on")


def wait_unlocked(lock: Path, timeout_s: float) -> None:
    import fcntl
    import time

    deadline = time.monotonic() + timeout_s
    with open(lock) as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the killed rollout's workers never let go of the fleet lock"
                time.sleep(0.2)


@pytest.mark.requires_tool("tmpfs", **NEEDS_TMPFS)
def test_a_device_without_room_for_the_new_version_is_left_as_it_was(
    tmp_path: Path, artifacts: dict[str, Path], sshd: SshServer | None
) -> None:
    from mlpack.rollout.release import unpacked_size, write_bundle

    v1, v2 = read_release(artifacts["v1"]).version, read_release(artifacts["v2"]).version
    fleet = SimulatedFleet(tmp_path / "devices", FLEET_SIZE, f"{NAME}-arm-edge", ssh=sshd)
    small = fleet.devices[0]
    settings = (small.root / "device.json").read_text()
    v1_bytes = unpacked_size(write_bundle(read_release(artifacts["v1"]), tmp_path / "v1.tar.gz"))
    # Room for v1 and its logs, 4 MiB more: the new version needs its size + 32 MiB kept free.
    mount_tmpfs(small.root, v1_bytes + 4 * 2**20)
    try:
        (small.root / "device.json").write_text(settings)
        fleet.install(artifacts["v1"])
        pids = {d.name: d.pids() for d in fleet.devices}
        runner = CliRunner()

        done = runner.invoke(app, ["rollout", str(artifacts["v2"]), "--fleet", str(fleet.inventory),
                                   "--health-timeout", "30"])

        assert done.exit_code == 1, done.output
        line = _line(done.output, "device-00: refused")
        assert "not enough disk space:" in line and "MiB needed (the new version" in line
        # Untouched: the same processes on the same version, nothing unpacked, no guard installed.
        assert small.current_version == v1 and small.installed_versions() == [v1]
        assert not (small.root / "rollout").exists() and small.served()["version"] == v1
        assert {d.name: d.pids() for d in fleet.devices} == pids
        assert all(d.current_version == v1 for d in fleet.devices)
        changed = sum(pids[d.name] != d.pids() or d.current_version != v1 for d in fleet.devices)
    finally:
        fleet.stop()
        unmount(small.root)
    record_fault("disk-too-small", nodeid(),
                 f"the canary's root on a tmpfs of {(v1_bytes + 4 * 2**20) / 2**20:.1f} MiB holding {v1}",
                 line, lost=changed,
                 detail=f"no file written on the device, its processes kept; the rollout stopped before wave 2 "
                        f"({v2} never unpacked anywhere)")
