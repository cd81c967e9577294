"""Signed rollouts on a simulated fleet (tests/fleet.py): the control node checks the
artifact's signature, and every device checks it again before it switches `current`.

A device that refuses a version keeps running what it ran: no switch, no restart, the
refused version removed again; the canary's refusal stops the rollout before the next wave.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlpack.build import BuildRequest, build
from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.model.info import sha256_file
from mlpack.progress import Progress
from mlpack.rollout.ansible import run_rollout
from mlpack.rollout.release import read_release
from mlpack.trust.signing import key_from, sign_artifact
from mlpack.artifact import Artifact

from .fleet import SimulatedFleet
from .manifests import edit_json
from .models import linear_model
from .signing_support import flip_one_byte, make_keys
from .pyramid import heavy

pytestmark = [pytest.mark.slow,
              pytest.mark.requires_tool("ansible", module=True, hint="ansible-core, in mlpack's edge extra (make setup)")]

NAME = "signed-model"
FLEET_SIZE = 3


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
@heavy
def artifacts(tmp_path_factory: pytest.TempPathFactory, keys) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("signed-artifacts")
    built = {}
    for version, seed in (("v1", 1), ("v2", 2)):
        model = linear_model(base / f"{version}.onnx", features=64, outputs=3, seed=seed)
        built[version] = build(BuildRequest(model=model, target="arm-edge", out=base / version, name=NAME),
                               Progress(quiet=True)).path
        sign_artifact(Artifact.open(built[version]), key_from(keys.private, "UNUSED"))
    return built


@pytest.fixture
@heavy
def fleet(tmp_path: Path, artifacts: dict[str, Path]):
    fleet = SimulatedFleet(tmp_path / "devices", FLEET_SIZE, f"{NAME}-arm-edge")
    try:
        fleet.install(artifacts["v1"])
        yield fleet
    finally:
        fleet.stop()


def snapshot(fleet: SimulatedFleet) -> dict[str, tuple]:
    """What a device runs: its current version, its installed versions and its processes."""
    return {d.name: (d.current_version, d.installed_versions(), d.pids()) for d in fleet.devices}


def test_a_signed_artifact_is_checked_on_each_device_then_rolled_out(fleet, artifacts, keys, tmp_path) -> None:
    v2 = read_release(artifacts["v2"]).version
    # The canary, then the other two in one wave (waves are not what is tested here).
    done = CliRunner().invoke(app, ["rollout", str(artifacts["v2"]), "--fleet", str(fleet.inventory),
                                    "--waves", "1,100%", "--health-timeout", "30", "--key", str(keys.public)])
    assert done.exit_code == 0, done.output
    assert f"{FLEET_SIZE} updated" in done.output
    for device in fleet.devices:
        assert device.current_version == v2
        # The device holds the artifact as signed, and its own check passed on it.
        assert (device.root / "versions" / v2 / "signature.sig").is_file()
        assert (device.root / "rollout-verify-key.pem").read_bytes() == keys.public.read_bytes()


def test_a_tampered_artifact_is_refused_before_any_device_is_touched(fleet, artifacts, keys, tmp_path) -> None:
    tampered = tmp_path / "tampered" / artifacts["v2"].name
    shutil.copytree(artifacts["v2"], tampered)
    for place in ("model/model.onnx", "bento/src/model.onnx"):
        flip_one_byte(tampered / place, offset=200)
    # Sealed again, as someone who can write the folder could: only the signature tells.
    edit_json(tampered, lambda m: m["model"].update(sha256=sha256_file(tampered / "model/model.onnx")), rehash=True)
    before = snapshot(fleet)

    with pytest.raises(MlpackError, match="signature does not verify.*model/model.onnx"):
        run_rollout(tampered, fleet.inventory, health_timeout_s=30, key=keys.public)
    done = CliRunner().invoke(app, ["rollout", str(tampered), "--fleet", str(fleet.inventory)],
                              env={"MLPACK_VERIFY_KEY": str(keys.public)})
    assert done.exit_code == 1 and "signature does not verify" in done.output

    assert snapshot(fleet) == before


def test_an_unsigned_artifact_is_refused_when_a_key_is_configured(fleet, artifacts, keys, tmp_path) -> None:
    unsigned = tmp_path / "unsigned" / artifacts["v2"].name
    shutil.copytree(artifacts["v2"], unsigned)
    (unsigned / "signature.sig").unlink()
    before = snapshot(fleet)
    done = CliRunner().invoke(app, ["rollout", str(unsigned), "--fleet", str(fleet.inventory)],
                              env={"MLPACK_VERIFY_KEY": str(keys.public)})
    assert done.exit_code == 1 and "is not signed" in done.output
    assert snapshot(fleet) == before


def test_a_signature_failure_on_the_device_rolls_nothing_forward(fleet, artifacts, keys, tmp_path) -> None:
    # The canary trusts only a key provisioned on it, which did not sign v2: the control
    # node's check passes, the device's own check fails.
    canary = fleet.devices[0]
    device_key = make_keys(canary.root / "trust", "device").public
    inventory = yaml.safe_load(fleet.inventory.read_text())
    inventory["all"]["hosts"][canary.name]["mlpack_device_verify_key"] = str(device_key)
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    v1, v2 = read_release(artifacts["v1"]).version, read_release(artifacts["v2"]).version
    before = snapshot(fleet)

    result = run_rollout(artifacts["v2"], tmp_path / "inventory.yaml", health_timeout_s=30,
                         key=keys.public, log=tmp_path / "ansible.log")
    print((tmp_path / "ansible.log").read_text()[-4000:], file=sys.stderr)

    assert not result.ok
    record = result.devices[canary.name]
    assert record["status"] == "refused" and record["from"] == v1 and record["to"] == v2
    assert "signature check on the device failed" in record["reason"]
    assert [result.status_of(d.name) for d in fleet.devices[1:]] == ["untouched"] * (FLEET_SIZE - 1)
    # Nothing moved anywhere: same version, same processes (no restart), v2 not left behind.
    assert snapshot(fleet) == before
    assert canary.served()["version"] == v1
