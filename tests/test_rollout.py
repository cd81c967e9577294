"""`mlpack rollout`: the generated playbook, the health gate's reading of the agent, the
probe, and the errors a user can fix. The fleet itself is in test_rollout_fleet.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.errors import InputError
from mlpack.resources import data_dir
from mlpack.rollout.ansible import DEFAULT_WAVES, parse_waves, prepare, render_inventory, tool
from mlpack.rollout.waves import UnreachableBudget, plan_waves
from mlpack.rollout.release import Release, probe_request, read_release
from mlpack.trust.signing import key_from, sign_artifact

from .manifests import edit_json, sensor_artifact
from .signing_support import make_keys

pytestmark = pytest.mark.requires_tool("ansible", module=True, hint="ansible-core, in mlpack's edge extra (make setup)")


def _release(tmp_path: Path) -> Release:
    return Release(artifact=tmp_path, name="sensor-arm-edge", version="0.1.0-0123456789ab",
                   model_sha256="0123456789ab" + "0" * 52, target="arm-edge",
                   inputs=[{"name": "x", "dtype": "float32", "shape": [None, 4]}], service_port=3000, agent_port=9464)


@pytest.fixture
def playbook(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"x" * 5000)
    return prepare(_release(tmp_path), work)


def _plugin(name: str):
    """Load one of the rollout's Ansible plugins the way Ansible does: as a file."""
    import importlib.util

    path = data_dir("templates") / "rollout" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_playbook_checks_the_disk_switches_through_the_guard_and_rolls_back_on_failure(playbook: Path) -> None:
    [play] = yaml.safe_load(playbook.read_text())
    # mlpack runs the play once per wave: every device of a wave finishes before it decides.
    assert "serial" not in play and "max_fail_percentage" not in play
    assert play["vars"]["mlpack_new_version"] == "0.1.0-0123456789ab"
    assert play["vars"]["mlpack_probe"] == {"inputs": {"x": [[0.0, 0.0, 0.0, 0.0]]}}
    assert play["vars"]["mlpack_confirm_timeout_s"] == 2 * 60 + 120  # both gate checks at most, + restart
    # The disk check's need: the unpacked bundle in whole 4 KiB blocks (a folder, a 5,000-byte file).
    assert play["vars"]["mlpack_new_size_bytes"] == 4096 + 8192
    [guarded] = [t for t in play["tasks"] if "block" in t]
    names = [t["name"] for t in guarded["block"]]
    assert names.index("Check the device has room for the new version") < names.index("Unpack the new version") \
        < names.index("Switch to the new version atomically, reverted by the device unless confirmed") \
        < names.index("Restart the service and the agent") < names.index("Check health of the new version") \
        < names.index("Confirm the switch, so the device keeps it")
    # A version a reverted switch left complete is not unpacked again (decided on the control node).
    [unpack] = [t for t in guarded["block"] if t["name"] == "Unpack the new version"]
    assert unpack["when"] == "not mlpack_have_version"
    assert [t["name"] for t in unpack["block"]][-1] == "Move the complete version into place"
    rescue = [t["name"] for t in guarded["rescue"]]
    assert rescue[2:5] == ["Switch back to the previous version", "Restart the previous version",
                           "Check health of the previous version"]
    assert guarded["rescue"][-1]["ansible.builtin.fail"]  # the host fails, so the rollout stops
    # The bundle, task files, guard and plugins sit beside the playbook.
    for name in ("restart.yml", "health.yml", "disk.yml", "switch.yml", "confirm.yml", "files/guard.py",
                 "filter_plugins/mlpack_metrics.py", "callback_plugins/mlpack_results.py",
                 "sensor-arm-edge-0.1.0-0123456789ab.tar.gz"):
        assert (playbook.parent / name).is_file(), name


@pytest.mark.parametrize("size, waves, sizes", [
    (10, DEFAULT_WAVES, [1, 1, 5, 3]),  # 10% of 10 is one device; half is five; the rest
    (3, DEFAULT_WAVES, [1, 1, 1]),
    (10, [1, "30%", "100%"], [1, 3, 6]),
    (5, [2], [2, 2, 1]),  # the last size repeats
    (250, DEFAULT_WAVES, [1, 25, 125, 99]),
])
def test_waves_batch_the_fleet_as_ansible_serial_does(size: int, waves, sizes: list[int]) -> None:
    hosts = [f"d{i}" for i in range(size)]
    plan = plan_waves(hosts, waves)
    assert [len(w) for w in plan] == sizes and [h for w in plan for h in w] == hosts
    assert plan == _ansible_serial_batches(hosts, waves)


def _ansible_serial_batches(hosts: list[str], waves) -> list[list[str]]:
    """The batches Ansible itself makes of a play with `serial: waves`."""
    from ansible.executor.playbook_executor import PlaybookExecutor
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play import Play
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[",".join(hosts) + ","])
    play = Play.load({"hosts": "all", "serial": list(waves), "gather_facts": False},
                     variable_manager=VariableManager(loader=loader, inventory=inventory), loader=loader)
    executor = PlaybookExecutor.__new__(PlaybookExecutor)  # only its batching, no run
    executor._inventory = inventory
    return [[h.name for h in batch] for batch in executor._get_serialized_batches(play)]


@pytest.mark.parametrize("text, wave, allowed", [("0", 5, 0), ("2", 5, 2), ("20%", 5, 1), ("20%", 4, 0),
                                                  ("100%", 3, 3)])
def test_the_unreachable_budget_is_a_count_or_a_share_of_the_wave(text: str, wave: int, allowed: int) -> None:
    assert UnreachableBudget.parse(text).allowed(wave) == allowed


@pytest.mark.parametrize("text", ["-1", "x", "150%", ""])
def test_a_bad_unreachable_budget_is_refused(text: str) -> None:
    with pytest.raises(InputError, match="--max-unreachable"):
        UnreachableBudget.parse(text)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["playbook.yml", "status.yml"])
def test_ansible_accepts_the_generated_playbooks(playbook: Path, name: str) -> None:
    done = subprocess.run([tool("ansible-playbook"), "--syntax-check", "-i", "device-1,", name],
                          capture_output=True, text=True, cwd=playbook.parent, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_inventory_template_writes_each_device_and_its_variables(tmp_path: Path) -> None:
    text = render_inventory("sensor-arm-edge", [
        {"name": "pi-1", "vars": {"ansible_host": "10.0.0.5", "mlpack_root": "/opt/mlpack/it's here"}},
        {"name": "pi-2", "vars": {"mlpack_agent_port": 9465}},
    ])
    assert yaml.safe_load(text) == {"all": {"hosts": {
        "pi-1": {"ansible_host": "10.0.0.5", "mlpack_root": "/opt/mlpack/it's here"},
        "pi-2": {"mlpack_agent_port": 9465},
    }}}


def test_the_gate_counts_successful_inferences_of_one_version_from_the_real_agent(tmp_path: Path) -> None:
    from mlpack_agent.client import EventClient
    from mlpack_agent.metrics import PROMETHEUS_NAMES
    from mlpack.rollout.status import read_agent

    from .agent_harness import AgentProcess, wait_for

    gate = _plugin("filter_plugins/mlpack_metrics.py")
    assert (gate.REQUESTS, gate.ERRORS) == (PROMETHEUS_NAMES["requests"], PROMETHEUS_NAMES["errors"])
    sha = "ab" * 32
    agent = AgentProcess(tmp_path / "agent", resource={"service.version": "0.1.0-abababababab",
                                                       "mlpack.model.sha256": sha}).start()
    try:
        client = EventClient({"model_sha256": sha}, socket_path=agent.socket, batch=1)
        for ok in (True, True, False):
            client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=16, ok=ok,
                             error_kind=None if ok else "model_error")
        # Wait for all three events: a scrape between two of them reads a partial count.
        text = wait_for(lambda: (t := agent.scrape()) and read_agent(t)[2:] == (3.0, 1.0) and t,
                        20, what="the agent to count the three events")
    finally:
        agent.stop()
    assert gate.successful_inferences(text, "0.1.0-abababababab", sha) == 2  # 3 requests, 1 error
    assert gate.successful_inferences(text, "0.1.0-abababababab") == 2
    assert gate.successful_inferences(text, "0.1.0-other", "") == 0
    assert gate.successful_inferences(text, "0.1.0-abababababab", "cd" * 32) == 0
    assert gate.successful_inferences("", "0.1.0-abababababab") == 0  # agent not up yet
    assert read_agent(text) == ("0.1.0-abababababab", sha, 3.0, 1.0)


def test_the_probe_is_one_row_of_zeros_per_input() -> None:
    probe = probe_request([
        {"name": "pixels", "dtype": "float32", "shape": [None, 2, 3]},
        {"name": "ids", "dtype": "int64", "shape": ["batch", "seq"]},
        {"name": "flag", "dtype": "bool", "shape": []},
    ])
    assert probe == {"inputs": {"pixels": [[[0.0] * 3] * 2], "ids": [[0]], "flag": False}}


@pytest.mark.parametrize("text, waves", [("1,10%,50%,100%", [1, "10%", "50%", "100%"]), ("2, 100%", [2, "100%"])])
def test_waves_are_counts_or_shares(text: str, waves: list) -> None:
    assert parse_waves(text) == waves


@pytest.mark.parametrize("text", ["", "0", "10%,abc", "150%", "-1"])
def test_bad_waves_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="wave"):
        parse_waves(text)


def test_an_artifact_is_read_for_a_rollout(tmp_path: Path) -> None:
    release = read_release(sensor_artifact(tmp_path))
    assert (release.name, release.version, release.service_port, release.agent_port) == \
        ("sensor-arm-edge", "0.1.0-0123456789ab", 3000, 9464)


def test_a_changed_artifact_is_never_rolled_out(tmp_path: Path) -> None:
    root = sensor_artifact(tmp_path)
    (root / "model" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(InputError, match="does not match its manifest.json.*changed: model/model.onnx"):
        read_release(root)


@pytest.mark.parametrize("key, value", [("image.tag", "9.9.9-elsewhere"), ("memory_mb", 64)])
def test_an_edited_manifest_of_a_signed_artifact_is_never_rolled_out(tmp_path: Path, key: str, value) -> None:
    root = sensor_artifact(tmp_path)
    keys = make_keys(tmp_path / "keys")
    sign_artifact(Artifact.open(root), key_from(keys.private, "UNUSED"))
    section, _, field = key.partition(".")
    edit_json(root, lambda m: m[section].update({field: value}) if field else m.update({section: value}))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    device-1:\n      ansible_host: 127.0.0.1\n")

    result = CliRunner().invoke(app, ["rollout", str(root), "--fleet", str(inventory), "--key", str(keys.public)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "signature does not verify" in lines[0] and "changed since signing: manifest.json" in lines[0]


def test_an_artifact_without_a_bento_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Bento"):
        read_release(sensor_artifact(tmp_path, bento=False))


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    artifact = sensor_artifact(tmp_path)
    cases = [
        (["rollout", "--fleet", "inventory.ini"], "no artifact given"),
        (["rollout", str(artifact), "--fleet", str(tmp_path / "missing.ini")], "does not exist"),
        (["rollout", "--status", "--fleet", str(tmp_path / "missing.ini")], "does not exist"),
        (["rollout", str(artifact), "--fleet", "host-1,", "--waves", "0"], "invalid wave size"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], (args, result.output)


@pytest.mark.parametrize("version, installed, ready, requests, errors, health", [
    ("v", "v", True, 5, 0, "ok"), ("v", None, True, 5, 1, "degraded"), ("v", "v", True, 2, 2, "failing"),
    ("v", "v", False, 0, 0, "service down"), (None, "v", True, 0, 0, "no agent"), (None, None, False, 0, 0, "down"),
    ("v", "w", True, 1, 0, "restart pending"),
])
def test_device_health_from_agent_and_service(version, installed, ready, requests, errors, health) -> None:
    from mlpack.rollout.status import DeviceStatus

    status = DeviceStatus("d", version=version, installed=installed, ready=ready, requests=requests, errors=errors)
    assert status.health == health


def test_a_device_the_status_playbook_did_not_reach_is_unreachable() -> None:
    from mlpack.rollout.status import device_status

    assert device_status("edge-1", None).health == "unreachable"
    assert device_status("edge-1", {"status": {}, "summary": {"unreachable": 1}}).health == "unreachable"
    down = device_status("edge-1", {"status": {"installed": "v", "metrics": "", "ready": False}})
    assert (down.installed, down.version, down.health) == ("v", None, "down")
