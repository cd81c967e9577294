"""Roll an artifact out to an Ansible fleet: render the playbook, run ansible-playbook, read the outcome.

The playbook (templates/rollout/playbook.yml.j2) does the work on the devices; this
module only prepares its inputs (the bundle, the probe, the waves) in a work folder and
reads back one small JSON result per device that the playbook writes on the control node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import InputError
from ..resources import data_dir
from ..signing import VERIFY_KEY_ENV, Key, key_from
from .release import Release, read_release, write_bundle

# One canary device, then 10%, then half, then everyone left (Ansible's `serial`).
DEFAULT_WAVES: tuple[int | str, ...] = (1, "10%", "50%", "100%")
TEMPLATE_GROUP = "rollout"


@dataclass
class RolloutResult:
    release: Release
    returncode: int
    hosts: list[str]  # every host the rollout was aimed at, in inventory order
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> playbook's record
    workdir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and all(
            self.devices.get(h, {}).get("status") in ("updated", "unchanged") for h in self.hosts
        )

    def status_of(self, host: str) -> str:
        return self.devices.get(host, {}).get("status", "untouched")

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for host in self.hosts:
            counts[self.status_of(host)] = counts.get(self.status_of(host), 0) + 1
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def tool(name: str) -> str:
    """An Ansible executable: beside this Python first (a venv), then on PATH."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        from ..extras import missing_extra

        raise missing_extra(f"Ansible ({name})", "edge", "`mlpack rollout` to an SSH fleet")
    return found


def _environment() -> Any:
    """mlpack's sandboxed Jinja environment with [[ ]] / [% %] delimiters, so Ansible's
    own {{ }} expressions in the templates pass through untouched."""
    from ..render import _environment as mlpack_environment

    return mlpack_environment().overlay(
        block_start_string="[%", block_end_string="%]",
        variable_start_string="[[", variable_end_string="]]",
        comment_start_string="[#", comment_end_string="#]",
    )


def render_template(name: str, **values: Any) -> str:
    return _environment().get_template(f"{TEMPLATE_GROUP}/{name}").render(**values)


def render_inventory(artifact: str, devices: Sequence[dict[str, Any]]) -> str:
    """An inventory in YAML: devices are {"name": host, "vars": {host vars}}."""
    return render_template("inventory.yaml.j2", artifact=artifact, devices=devices)


def prepare(
    release: Release,
    workdir: Path,
    hosts: str = "all",
    waves: Sequence[int | str] = DEFAULT_WAVES,
    health_timeout_s: float = 60.0,
    verify_key: Key | None = None,
) -> Path:
    """Write the playbook, its task files, filter plugin and the bundle; return the playbook.

    With `verify_key`, every device checks the new version's signature with it before
    switching to it (templates/rollout/verify.yml)."""
    _check_waves(waves)
    copy_static_files(workdir)
    bundle = write_bundle(release, workdir / f"{release.name}-{release.version}.tar.gz")
    key_file = ""
    if verify_key is not None:
        key_file = str(workdir / "verify-key.pem")
        Path(key_file).write_bytes(verify_key.read())
    playbook = workdir / "playbook.yml"
    playbook.write_text(render_template(
        "playbook.yml.j2",
        artifact=release.name, version=release.version, model_sha256=release.model_sha256,
        hosts=hosts, waves=list(waves), bundle=str(bundle),
        probe=release.probe, health_timeout_s=health_timeout_s, mlpack_version=__version__,
        service_port=release.service_port, agent_port=release.agent_port,
        verify_key=key_file, verify_mode=_verify_mode(verify_key),
    ), encoding="utf-8")
    return playbook


def _verify_mode(key: Key | None) -> str:
    """How model_signing checks on the device: `key` (a public key) or `certificate` (a CA)."""
    if key is None:
        return ""
    return "certificate" if key.kind == "certificate" else "key"


def copy_static_files(workdir: Path) -> None:
    """The task files, status playbook and plugins that sit beside a rendered playbook."""
    source = data_dir("templates") / TEMPLATE_GROUP
    for path in source.rglob("*"):
        if path.is_file() and path.suffix != ".j2" and "__pycache__" not in path.parts:
            dest = workdir / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


def run_playbook(
    playbook: Path, inventory: str | Path, limit: str | None = None, log: Path | None = None,
    extra_vars: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run ansible-playbook; returns its exit code and, per host, what the results callback wrote."""
    source = str(Path(inventory).resolve()) if Path(inventory).exists() else str(inventory)
    command = [tool("ansible-playbook"), "-i", source, str(playbook)]
    if limit:
        command += ["--limit", limit]
    if extra_vars:
        command += ["--extra-vars", json.dumps(extra_vars)]
    results = playbook.parent / "results.json"
    env = {**_ansible_env(), "MLPACK_ROLLOUT_RESULTS": str(results)}
    if log is None:
        returncode = subprocess.run(command, env=env, cwd=playbook.parent, stdin=subprocess.DEVNULL).returncode
    else:
        with open(log, "ab") as out:
            returncode = subprocess.run(command, env=env, cwd=playbook.parent, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT).returncode
    hosts = json.loads(results.read_text(encoding="utf-8"))["hosts"] if results.is_file() else {}
    return returncode, hosts


def inventory_hosts(inventory: str | Path, limit: str | None = None) -> dict[str, dict[str, Any]]:
    """Hosts and their variables as Ansible resolves them (any inventory format or plugin)."""
    if "," not in str(inventory) and not Path(inventory).exists():  # "a,b," is Ansible's inline host list
        raise InputError(f"fleet inventory {inventory} does not exist", "pass an Ansible inventory with --fleet")
    command = [tool("ansible-inventory"), "-i", str(inventory), "--list"]
    if limit:
        command += ["--limit", limit]
    done = subprocess.run(command, capture_output=True, text=True, env=_ansible_env(), stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"cannot read the fleet inventory {inventory}: {detail}",
                         "pass an Ansible inventory file or folder with --fleet")
    data = json.loads(done.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    ordered = _hosts_in_order(data, "all")
    return {host: hostvars.get(host, {}) for host in ordered}


def run_rollout(
    artifact: Path,
    inventory: str | Path,
    *,
    limit: str | None = None,
    waves: Sequence[int | str] = DEFAULT_WAVES,
    health_timeout_s: float = 60.0,
    log: Path | None = None,
    keep_workdir: bool = False,
    key: Path | None = None,
) -> RolloutResult:
    """Run the rollout; returns what happened on every device (never raises on a failed wave).

    With `key` (or $MLPACK_VERIFY_KEY) the artifact's signature must verify here, and
    again on every device before it switches."""
    verify_key = key_from(key, VERIFY_KEY_ENV)
    release = read_release(artifact, key)
    hosts = list(inventory_hosts(inventory, limit))
    if not hosts:
        raise InputError(f"the fleet {inventory} has no hosts{' matching ' + limit if limit else ''}",
                         "add devices to the inventory")
    workdir = Path(tempfile.mkdtemp(prefix=f"mlpack-rollout-{release.name}-"))
    try:
        playbook = prepare(release, workdir, waves=waves, health_timeout_s=health_timeout_s,
                           verify_key=verify_key)
        returncode, per_host = run_playbook(playbook, inventory, limit, log)
        devices = _device_records(per_host)
        return RolloutResult(release, returncode, hosts, devices, workdir if keep_workdir else None)
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _device_records(per_host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per host: the playbook's record, or what Ansible's counts say when there is none."""
    devices = {}
    for host, data in per_host.items():
        record, summary = data["record"], data["summary"]
        if not record:
            if summary.get("unreachable"):
                record = {"status": "unreachable"}
            elif summary.get("failures"):
                record = {"status": "failed"}
            else:
                continue
        devices[host] = {"host": host, **record}
    return devices


def _ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    # Defaults only: a user's own ANSIBLE_* settings and ansible.cfg still apply.
    env.setdefault("ANSIBLE_RETRY_FILES_ENABLED", "false")
    env.setdefault("ANSIBLE_PIPELINING", "true")
    env.setdefault("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
    return env


def _hosts_in_order(data: dict[str, Any], group: str, seen: set[str] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    found = []
    node = data.get(group, {})
    for host in node.get("hosts", []):
        if host not in seen:
            seen.add(host)
            found.append(host)
    for child in node.get("children", []):
        found += _hosts_in_order(data, child, seen)
    return found


def _check_waves(waves: Sequence[int | str]) -> None:
    if not waves:
        raise InputError("--waves is empty", "give wave sizes such as 1,10%,50%,100%")
    for wave in waves:
        text = str(wave)
        number = text[:-1] if text.endswith("%") else text
        if not number.isdigit() or int(number) < 1 or (text.endswith("%") and int(number) > 100):
            raise InputError(f"invalid wave size {text!r}", "use a device count (1) or a share (10%), e.g. 1,10%,50%,100%")


def parse_waves(text: str) -> list[int | str]:
    waves: list[int | str] = [w.strip() if w.strip().endswith("%") else int(w) if w.strip().isdigit() else w.strip()
                              for w in text.split(",") if w.strip()]
    _check_waves(waves)
    return waves
