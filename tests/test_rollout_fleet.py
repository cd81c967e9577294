"""`mlpack rollout` with Ansible on a simulated fleet of ten devices (see tests/fleet.py).

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
from mlpack.model_info import sha256_file
from mlpack.progress import Progress
from mlpack.rollout.ansible import run_rollout
from mlpack.rollout.release import read_release
from mlpack.rollout.status import fleet_status

from .fleet import SSHD, SimulatedFleet, SshServer, stop_processes
from .manifests import edit_json, read_json
from .models import linear_model, linear_reference

pytestmark = pytest.mark.requires_tool("ansible", module=True, hint="ansible-core, in mlpack's edge extra (make setup)")

FLEET_SIZE = 10
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
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("rollout-artifacts")
    v1 = _build(linear_model(base / "v1.onnx", features=64, outputs=3, seed=1), base / "v1")
    v2 = _build(linear_model(base / "v2.onnx", features=64, outputs=3, seed=2), base / "v2")
    bad = with_swapped_model(v2, batch_dependent_model(base / "bad.onnx"), base / "bad" / v2.name)
    return {"v1": v1, "v2": v2, "bad": bad, "v2_model": base / "v2.onnx"}


@pytest.fixture(scope="module")
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
    assert read_json(artifacts["v2"])["rollouts"][-1]["outcome"] == f"{FLEET_SIZE} updated"
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
    assert fleet.over_ssh == ([] if sshd is None else ["device-00", "device-09"])
    assert [d.name for d in fleet.devices if d.restarted_over_ssh()] == fleet.over_ssh
    # Rolling the same artifact out again changes nothing (two devices, to keep it short).
    pids = {d.name: d.pids() for d in fleet.devices[:2]}
    again = run_rollout(artifacts["v2"], fleet.inventory, limit="device-00,device-01", health_timeout_s=30)
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


def test_an_unreachable_canary_stops_the_rollout(artifacts: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    from .fleet import free_ports

    fleet = SimulatedFleet(tmp_path / "devices", 3, f"{NAME}-arm-edge")
    try:
        v1 = fleet.install(artifacts["v1"])
        inventory = yaml.safe_load(fleet.inventory.read_text())
        inventory["all"]["hosts"]["device-00"].update({  # SSH to a port nobody listens on
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_ports(1)[0],
            "ansible_ssh_common_args": "-o BatchMode=yes -o ConnectTimeout=5"})
        (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))

        result = _rollout(artifacts["v2"], fleet, tmp_path / "ansible.log", tmp_path / "inventory.yaml")

        assert not result.ok
        assert [result.status_of(h) for h in result.hosts] == ["unreachable", "untouched", "untouched"]
        assert all(d.current_version == v1 and d.installed_versions() == [v1] for d in fleet.devices)
    finally:
        fleet.stop()
