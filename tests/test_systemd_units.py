"""The edge target's systemd units under a real systemd.

systemd runs as PID 1 in a container (`systemd-nspawn --volatile=yes`: the host's /usr
read-only, everything else a tmpfs that vanishes with it, its own network). It loads the
two units an arm-edge artifact ships (`iac/systemd/`), as they are, with all their
hardening (DynamicUser=, ProtectSystem=strict, the system call filter, ...), over a device
folder laid out as `mlpack rollout` leaves it: the release bundle unpacked under
versions/, `current` pointing at it, the device guard installed, and a venv made with the
system's python3 by the install lines of the model unit's own comment (uv stands in for
pip, for speed).

Then the crash fault: each unit's process is killed (SIGKILL) and systemd restarts it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mlpack.resources import data_dir
from mlpack.rollout.release import read_release, write_bundle

from .conftest import uv

pytestmark = pytest.mark.requires_tool("systemd-nspawn", "/usr/bin/python3",
                                       hint="apt-get install systemd-container python3-venv")

UNITS = ("mlpack-agent.service", "mlpack-model.service")
AGENT_PORT, MODEL_PORT = 9464, 3000
GUARD = data_dir("templates") / "rollout" / "files" / "guard.py"


@dataclass
class Machine:
    """A booted container: systemctl inside it, and HTTP on its own loopback."""

    process: subprocess.Popen
    leader: int  # the container's PID 1, as the host sees it

    def systemctl(self, *args: str) -> str:
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "systemctl", *args],
                              capture_output=True, text=True, timeout=30)
        return done.stdout

    def unit(self, name: str) -> dict[str, str]:
        text = self.systemctl("show", "-p", "ActiveState,SubState,MainPID,NRestarts,Result", name)
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def journal(self, name: str) -> str:
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "journalctl", "--no-pager", "-u", name],
                              capture_output=True, text=True, timeout=30)
        return done.stdout[-3000:]

    def http(self, port: int, path: str, body: dict | None = None) -> tuple[int, str]:
        """(status, body) of a request to 127.0.0.1:port inside the container; (0, why) when
        nothing answers."""
        script = (
            "import json, sys, urllib.request, urllib.error\n"
            "port, path, body = int(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
            "data = body.encode() if body else None\n"
            "req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=data,\n"
            "                             headers={'content-type': 'application/json'})\n"
            "try:\n"
            "    with urllib.request.urlopen(req, timeout=5) as r: print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
            "except OSError as e: print(0); print(e)\n")
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-n", sys.executable, "-c", script, str(port),
                               path, json.dumps(body) if body is not None else ""],
                              capture_output=True, text=True, timeout=30)
        status, _, text = done.stdout.partition("\n")
        return int(status or 0), text


def wait_for(what: str, check: Callable[[], bool], machine: Machine, timeout_s: float = 90) -> float:
    """Seconds until `check()` holds; fails with both units' journals when it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    logs = "\n".join(f"--- {u}: {machine.unit(u)}\n{machine.journal(u)}" for u in UNITS)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{logs}")


def install_commands(unit: str) -> list[list[str]]:
    """The arguments of each `.../venv/bin/pip install ...` line of a unit's comment."""
    return [shlex.split(line.split("/bin/pip install", 1)[1].split("#", 1)[0])
            for line in unit.splitlines() if line.startswith("#") and "/venv/bin/pip install" in line]


def _device(demo_artifact, root: Path) -> tuple[Path, Path]:
    """(the artifact's units, the device folder /opt/mlpack/NAME) as a rollout leaves them."""
    artifact = demo_artifact("arm-edge").path
    release = read_release(artifact)
    device = root / "device"
    version = device / "versions" / release.version
    version.mkdir(parents=True)
    bundle = write_bundle(release, root / "bundle.tar.gz")
    # As Ansible's unarchive does it, as root: GNU tar keeps the members' modes.
    subprocess.run(["tar", "-xzf", str(bundle), "-C", str(version)], check=True)
    (device / "current").symlink_to(f"versions/{release.version}")
    (device / "rollout").mkdir()
    shutil.copy2(GUARD, device / "rollout" / "guard.py")
    # The venv, made as the model unit's comment says, with its own commands (uv for pip).
    home = f"/opt/mlpack/{release.name}"
    uv("venv", "-q", "--python", "/usr/bin/python3", str(device / "venv"))
    for argv in install_commands((artifact / "iac" / "systemd" / "mlpack-model.service").read_text()):
        uv("pip", "install", "-q", "--python", str(device / "venv" / "bin" / "python"),
           *(arg.replace(f"{home}/current", str(version)) for arg in argv))
    units = root / "units"
    units.mkdir()
    for name in UNITS:
        shutil.copy2(artifact / "iac" / "systemd" / name, units / name)
    # What `systemctl enable` would start at boot, as one target of its own.
    (units / "mlpack-device.target").write_text("[Unit]\nDescription=the mlpack units, as enabled\n"
                                                f"Wants={' '.join(UNITS)}\n")
    return units, device


@pytest.fixture(scope="module")
def machine(demo_artifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    root = tmp_path_factory.mktemp("systemd")
    units, device = _device(demo_artifact, root)
    home = f"/opt/mlpack/{read_release(demo_artifact('arm-edge').path).name}"
    log = (root / "nspawn.log").open("w")
    process = subprocess.Popen(
        ["systemd-nspawn", "--quiet", "--directory=/", "--volatile=yes", "--register=no", "--keep-unit",
         "--private-network", f"--bind-ro={units}:/etc/systemd/system",
         # /etc is the volatile tmpfs; a device has these two, and BentoML resolves localhost.
         "--bind-ro=/etc/hosts", "--bind-ro=/etc/nsswitch.conf", f"--bind={device}:{home}",
         "--boot", "--", "systemd.unit=mlpack-device.target", "systemd.firstboot=off"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    leader = 0
    try:
        for _ in range(400):  # nspawn's first child sets the container up, then becomes its systemd
            children = subprocess.run(["pgrep", "-P", str(process.pid), "-x", "systemd"], capture_output=True,
                                      text=True).stdout.split()
            if children or process.poll() is not None:
                leader = int(children[0]) if children else 0
                break
            time.sleep(0.05)
        if not leader:
            pytest.fail(f"systemd-nspawn did not start a container: {(root / 'nspawn.log').read_text()[-2000:]}")
        yield Machine(process, leader)
    finally:
        # Killing the container's PID 1 ends every process in it at once (a halt would wait
        # for each unit's stop timeout); nothing of it outlives its tmpfs.
        if leader:
            os.kill(leader, signal.SIGKILL)
        else:
            process.kill()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _answers(machine: Machine) -> Callable[[], bool]:
    return lambda: (machine.http(AGENT_PORT, "/metrics")[0] == 200
                    and machine.http(MODEL_PORT, "/readyz")[0] == 200)


PIXELS = {"inputs": {"pixels": [[0.0] * 64]}}


def test_both_units_start_under_their_hardening_and_the_agent_counts_the_models_requests(machine: Machine) -> None:
    wait_for("both units answering", _answers(machine), machine)
    status, body = machine.http(MODEL_PORT, "/predict", PIXELS)
    assert status == 200, body
    assert set(json.loads(body)["outputs"]) == {"label", "probabilities"}
    # The service reaches the agent's socket in their shared runtime directory (one dynamic user).
    wait_for("the agent counting the request",
             lambda: 'mlpack_inference_requests_total{' in machine.http(AGENT_PORT, "/metrics")[1], machine, 30)
    for name in UNITS:
        assert machine.unit(name)["ActiveState"] == "active", machine.journal(name)


def test_a_killed_unit_is_restarted_by_systemd_and_answers_again(machine: Machine) -> None:
    from .faults import nodeid, record_fault

    wait_for("both units answering", _answers(machine), machine)
    restarted = {}
    for name, port, path in [("mlpack-agent.service", AGENT_PORT, "/metrics"), ("mlpack-model.service", MODEL_PORT, "/readyz")]:
        before = machine.unit(name)
        machine.systemctl("kill", "--signal=SIGKILL", name)
        back = wait_for(f"{name} restarted", lambda: (machine.unit(name)["NRestarts"] == str(int(before["NRestarts"]) + 1)
                                                      and machine.http(port, path)[0] == 200), machine)
        after = machine.unit(name)
        assert after["ActiveState"] == "active" and after["MainPID"] != before["MainPID"]
        assert "status=9/KILL" in machine.journal(name)
        restarted[name] = back
    assert machine.http(MODEL_PORT, "/predict", PIXELS)[0] == 200
    left_stopped = [name for name in UNITS if machine.unit(name)["ActiveState"] != "active"]
    assert left_stopped == []
    record_fault("service-crash", nodeid(),
                 "SIGKILL to each unit's main process, systemd 252 as PID 1 (systemd-nspawn)",
                 "the unit restarts after RestartSec=5 and answers again: "
                 + ", ".join(f"{name.split('.')[0]} in {s:.1f} s" for name, s in restarted.items()),
                 len(left_stopped), "each unit's NRestarts rose by one, a new main process, status=9/KILL in its "
                 "journal; a prediction answered 200 after both")
