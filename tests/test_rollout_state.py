"""A rollout's state and lock on the control node, with the playbook runs stood in for:
Ctrl-C leaves a state that `--resume` continues from the interrupted wave; a stopped
rollout resumes too; a finished one does not; a second rollout to a fleet is refused
while a lock is held, and a lock its dead holder left is taken over."""

from __future__ import annotations

import subprocess
import sys
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import InputError
from mlpack.rollout import ansible
from mlpack.rollout.state import FleetLock, RolloutState, fleet_dir

from .manifests import sensor_artifact

pytestmark = pytest.mark.requires_tool("ansible", module=True, hint="ansible-core, in mlpack's edge extra (make setup)")

HOSTS = ["d1", "d2", "d3", "d4"]


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n" + "".join(f"    {h}:\n      ansible_connection: local\n" for h in HOSTS))
    return inventory


class Playbook:
    """Stands in for ansible-playbook: each wave's hosts get `outcome`, or the run is
    interrupted (Ctrl-C) at wave `interrupt_at`."""

    def __init__(self, outcome: dict[str, str] | None = None, interrupt_at: int | None = None) -> None:
        self.outcome, self.interrupt_at, self.waves = outcome or {}, interrupt_at, []

    def __call__(self, playbook, inventory, limit=None, log=None, extra_vars=None, pass_fds=()):
        self.waves.append(list(limit))
        if len(self.waves) == self.interrupt_at:
            raise KeyboardInterrupt
        return 0, {h: {"record": {"status": self.outcome.get(h, "updated")}, "summary": {}} for h in limit}


def test_ctrl_c_leaves_a_state_that_resume_continues_from_the_interrupted_wave(
    tmp_path: Path, fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = sensor_artifact(tmp_path)
    first = Playbook(interrupt_at=2)
    monkeypatch.setattr(ansible, "run_playbook", first)
    runner = CliRunner()

    done = runner.invoke(app, ["rollout", str(artifact), "--fleet", str(fleet), "--waves", "1,2,100%"])

    assert done.exit_code == 130
    assert f"continue with: mlpack rollout --resume --fleet {fleet}" in done.output
    state = RolloutState.load(fleet_dir(fleet))
    assert (state.status, state.finished_waves, state.waves) == ("interrupted", 1, [["d1"], ["d2", "d3"], ["d4"]])
    assert state.reason == "interrupted in wave 2 of 3"

    second = Playbook()
    monkeypatch.setattr(ansible, "run_playbook", second)
    resumed = runner.invoke(app, ["rollout", "--resume", "--fleet", str(fleet)])

    assert resumed.exit_code == 0, resumed.output
    assert second.waves == [["d2", "d3"], ["d4"]]  # the interrupted wave again, then the rest
    assert "resuming the rollout of 0.1.0-0123456789ab at wave 2 of 3" in resumed.output
    assert RolloutState.load(fleet_dir(fleet)).status == "finished"
    again = runner.invoke(app, ["rollout", "--resume", "--fleet", str(fleet)])
    assert again.exit_code == 2 and "nothing to resume" in again.output


def test_an_unreachable_device_stops_the_rollout_unless_the_budget_allows_it(
    tmp_path: Path, fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = sensor_artifact(tmp_path)
    monkeypatch.setattr(ansible, "run_playbook", Playbook({"d2": "unreachable"}))
    stopped = ansible.run_rollout(artifact, fleet, waves=[1, 2, "100%"])
    assert stopped.reason == "wave 2 of 3: d2 unreachable (1 of 2, --max-unreachable 0)"
    assert stopped.status_of("d4") == "untouched" and not stopped.finished

    budget = ansible.UnreachableBudget.parse("50%")  # one of a wave of two
    playbook = Playbook({"d2": "unreachable"})
    monkeypatch.setattr(ansible, "run_playbook", playbook)
    allowed = ansible.run_rollout(artifact, fleet, waves=[1, 2, "100%"], max_unreachable=budget)
    assert allowed.finished and allowed.unreachable == ["d2"] and len(playbook.waves) == 3


def test_a_failed_device_stops_the_rollout_and_resume_tries_its_wave_again(
    tmp_path: Path, fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = sensor_artifact(tmp_path)
    monkeypatch.setattr(ansible, "run_playbook", Playbook({"d1": "rolled_back"}))
    stopped = ansible.run_rollout(artifact, fleet)
    assert stopped.reason == "wave 1 of 3: d1 failed" and stopped.finished_waves == 0
    again = Playbook()
    monkeypatch.setattr(ansible, "run_playbook", again)
    assert ansible.run_rollout(None, fleet, resume=True).finished
    assert again.waves == [["d1"], ["d2"], ["d3", "d4"]]


def test_a_second_rollout_to_a_fleet_is_refused_while_one_holds_its_lock(tmp_path: Path, fleet: Path) -> None:
    folder = fleet_dir(fleet)
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time, os, json\n"
        f"fd = os.open({str(folder / 'lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.pwrite(fd, json.dumps({'pid': os.getpid(), 'host': 'elsewhere', 'since': 'then'}).encode(), 0)\n"
        "print('locked', flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"already running \(pid {holder.pid} on elsewhere since then"):
            with FleetLock(fleet, "x"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # Its holder is gone: the lock it left is taken over, and names its new holder.
    with FleetLock(fleet, "x") as lock:
        assert lock.fd is not None
        assert json.loads((folder / "lock").read_text())["pid"] == os.getpid()
