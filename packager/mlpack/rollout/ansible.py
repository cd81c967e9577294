"""Roll an artifact out to an Ansible fleet: render the playbook, run it wave by wave, read the outcome.

The playbook (templates/rollout/playbook.yml.j2) does the work on the devices; this
module prepares its inputs (the bundle, the probe) in a work folder, runs
ansible-playbook once per wave (waves.py: the plan and the unreachable budget), reads
back one small JSON result per device that the playbook writes on the control node, and
keeps the rollout's state and lock (state.py) so that it can be resumed.
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
from typing import Any, Callable, Sequence

from .. import __version__
from ..errors import InputError, MlpackError
from ..progress import Progress
from ..resources import data_dir
from ..trust.signing import VERIFY_KEY_ENV, Key, key_from
from .release import Release, read_release, unpacked_size, write_bundle
from .state import FleetLock, RolloutState, fleet_dir, fleet_id
from .waves import DEFAULT_WAVES, UnreachableBudget, check_waves, parse_waves, plan_waves

__all__ = ["DEFAULT_WAVES", "parse_waves", "run_rollout", "prepare", "render_inventory", "tool"]

TEMPLATE_GROUP = "rollout"
# Disk a device keeps free beside a new version unless its `mlpack_disk_reserve_mb` says otherwise.
DISK_RESERVE_MB = 32
# Outcomes that keep a device serving a version that passed its gate.
GOOD = ("updated", "unchanged")
# Outcomes that stop the rollout before the next wave (unreachable: past the budget).
FAILED = ("failed", "rolled_back", "refused")


@dataclass
class RolloutResult:
    release: Release
    returncode: int  # of the last ansible-playbook run
    hosts: list[str]  # every host the rollout was aimed at, in inventory order
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> playbook's record
    workdir: Path | None = None
    waves: list[list[str]] = field(default_factory=list)
    finished_waves: int = 0
    reason: str = ""  # why it stopped before the last wave
    state_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """Every device serves the new version."""
        return all(self.status_of(h) in GOOD for h in self.hosts)

    @property
    def finished(self) -> bool:
        """Every wave ran, and no device failed (unreachable ones within the budget)."""
        return self.finished_waves == len(self.waves) and not self.failed

    @property
    def failed(self) -> list[str]:
        return [h for h in self.hosts if self.status_of(h) in FAILED]

    @property
    def unreachable(self) -> list[str]:
        return [h for h in self.hosts if self.status_of(h) == "unreachable"]

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
    from ..render.templates import _environment as mlpack_environment

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


def default_confirm_timeout(health_timeout_s: float) -> float:
    """Time a device gives its health gate to confirm a switch: both gate checks at their
    longest, plus two minutes for the restart."""
    return 2 * health_timeout_s + 120


def prepare(
    release: Release,
    workdir: Path,
    hosts: str = "all",
    health_timeout_s: float = 60.0,
    confirm_timeout_s: float | None = None,
    verify_key: Key | None = None,
) -> Path:
    """Write the playbook, its task files, plugins, the device guard and the bundle; return the playbook.

    With `verify_key`, every device checks the new version's signature with it before
    switching to it (templates/rollout/verify.yml)."""
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
        hosts=hosts, bundle=str(bundle), unpacked_bytes=unpacked_size(bundle), reserve_mb=DISK_RESERVE_MB,
        probe=release.probe, health_timeout_s=health_timeout_s,
        confirm_timeout_s=confirm_timeout_s or default_confirm_timeout(health_timeout_s),
        mlpack_version=__version__, service_port=release.service_port, agent_port=release.agent_port,
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
    playbook: Path, inventory: str | Path, limit: str | Sequence[str] | None = None, log: Path | None = None,
    extra_vars: dict[str, Any] | None = None, pass_fds: Sequence[int] = (),
) -> tuple[int, dict[str, Any]]:
    """Run ansible-playbook; returns its exit code and, per host, what the results callback wrote.

    `limit` is a pattern, or a list of host names (passed in a file: names need no quoting).
    """
    command = [tool("ansible-playbook"), "-i", fleet_id(inventory), str(playbook)]
    if isinstance(limit, str):
        command += ["--limit", limit]
    elif limit is not None:
        hosts_file = playbook.parent / "wave-hosts"
        hosts_file.write_text("".join(f"{host}\n" for host in limit), encoding="utf-8")
        command += ["--limit", f"@{hosts_file}"]
    if extra_vars:
        command += ["--extra-vars", json.dumps(extra_vars)]
    results = playbook.parent / "results.json"
    results.unlink(missing_ok=True)
    env = {**_ansible_env(), "MLPACK_ROLLOUT_RESULTS": str(results)}
    if log is None:
        returncode = subprocess.run(command, env=env, cwd=playbook.parent, stdin=subprocess.DEVNULL,
                                    pass_fds=pass_fds).returncode
    else:
        with open(log, "ab") as out:
            returncode = subprocess.run(command, env=env, cwd=playbook.parent, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, pass_fds=pass_fds).returncode
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
    artifact: Path | None,
    inventory: str | Path,
    *,
    limit: str | None = None,
    waves: Sequence[int | str] = DEFAULT_WAVES,
    health_timeout_s: float = 60.0,
    confirm_timeout_s: float | None = None,
    max_unreachable: UnreachableBudget = UnreachableBudget(),
    resume: bool = False,
    log: Path | None = None,
    keep_workdir: bool = False,
    echo: Callable[[str], None] | None = None,
    key: Path | None = None,
    progress: Progress | None = None,
) -> RolloutResult:
    """Run the rollout wave by wave; returns what happened on every device (never raises on a
    failed wave). With `resume`, continue the fleet's last unfinished rollout from its first
    unfinished wave, with its waves and options (`artifact` may then be None: the state names it).

    With `key` (or $MLPACK_VERIFY_KEY) the artifact's signature must verify here, and
    again on every device before it switches (a resume reuses the key file it was given)."""
    say = echo or (lambda _: None)
    folder = fleet_dir(inventory)
    if resume:
        earlier = _resumable(RolloutState.load(folder), inventory, artifact)
        artifact = Path(earlier.artifact)
        key = key or (Path(earlier.options["key"]) if earlier.options.get("key") else None)
    elif artifact is None:
        raise InputError("no artifact given", "pass the artifact folder: mlpack rollout ARTIFACT --fleet FLEET")
    verify_key = key_from(key, VERIFY_KEY_ENV)
    release = read_release(artifact, key)
    with FleetLock(inventory, str(release.artifact)) as lock:
        if resume:  # read again: the last holder may have changed it meanwhile
            state = _resumable(RolloutState.load(folder), inventory, artifact)
            if state.version != release.version:
                raise InputError(f"the artifact is {release.version}, the rollout to resume is {state.version}",
                                 f"resume without an artifact, or roll {release.version} out anew")
            state.status, state.reason, state.pid = "running", "", os.getpid()
            say(f"resuming the rollout of {state.version} at wave {state.finished_waves + 1} of {len(state.waves)}")
        else:
            state = _plan(release, inventory, limit, waves, say, {
                "health_timeout_s": health_timeout_s,
                "confirm_timeout_s": confirm_timeout_s or default_confirm_timeout(health_timeout_s),
                "max_unreachable": str(max_unreachable), "limit": limit, "waves": [str(w) for w in waves],
                "key": str(verify_key.path) if verify_key is not None and verify_key.path else None})
        return _run_waves(state, folder, release, verify_key, inventory, lock.fd, log, keep_workdir, say,
                          progress or Progress(quiet=True))


def _plan(release: Release, inventory: str | Path, limit: str | None, waves: Sequence[int | str],
          say: Callable[[str], None], options: dict[str, Any]) -> RolloutState:
    """A new rollout's state: the fleet's hosts in waves, and the options it runs with."""
    check_waves(waves)
    hosts = list(inventory_hosts(inventory, limit))
    if not hosts:
        raise InputError(f"the fleet {inventory} has no hosts{' matching ' + limit if limit else ''}",
                         "add devices to the inventory")
    previous = RolloutState.load(fleet_dir(inventory))
    if previous is not None and previous.status != "finished":
        say(f"note: the unfinished rollout of {previous.version} to this fleet "
            f"({previous.status}: {previous.reason or 'no reason recorded'}) is replaced by this one")
    return RolloutState(fleet=fleet_id(inventory), artifact=str(release.artifact), version=release.version,
                        waves=plan_waves(hosts, waves), options=options)


def _run_waves(state: RolloutState, folder: Path, release: Release, verify_key: Key | None,
               inventory: str | Path, lock_fd: int, log: Path | None, keep_workdir: bool,
               say: Callable[[str], None], progress: Progress) -> RolloutResult:
    """The waves from the first unfinished one; the state is saved before and after each.
    On a terminal a bar counts the devices of the finished waves."""
    options = state.options
    budget = UnreachableBudget.parse(options["max_unreachable"])
    state.save(folder)
    workdir = Path(tempfile.mkdtemp(prefix=f"mlpack-rollout-{release.name}-"))
    result = RolloutResult(release, 0, state.hosts, state.devices, workdir if keep_workdir else None,
                           state.waves, state.finished_waves, state_dir=folder)
    try:
        playbook = prepare(release, workdir, health_timeout_s=options["health_timeout_s"],
                           confirm_timeout_s=options["confirm_timeout_s"], verify_key=verify_key)
        left = sum(len(w) for w in state.waves[state.finished_waves:])
        with progress.bar(f"rolling out to {left} device{'s' * (left != 1)}", total=left) as bar:
            for number in range(state.finished_waves, len(state.waves)):
                wave = state.waves[number]
                say(f"wave {number + 1} of {len(state.waves)}: {len(wave)} device{'s' * (len(wave) != 1)}")
                # The fleet lock goes to ansible-playbook too: a wave outliving mlpack keeps it.
                result.returncode, per_host = run_playbook(playbook, inventory, wave, log, pass_fds=[lock_fd])
                if result.returncode not in (0, 2, 4) and not per_host:
                    raise MlpackError(f"ansible-playbook failed in wave {number + 1} (exit {result.returncode})"
                                      f"{_log_tail(log)}", "run it again with the same inventory to see why")
                records = _device_records(per_host)
                for host in wave:  # a device of this wave with no record was not reached at all
                    state.devices[host] = records.get(host) or {"host": host, "status": "unreachable"}
                stop = _stop_reason(state, wave, budget)
                if stop:
                    state.status, state.reason = "stopped", f"wave {number + 1} of {len(state.waves)}: {stop}"
                    break
                state.finished_waves = number + 1
                state.save(folder)
                bar.advance(len(wave))
            else:
                state.status = "finished"
    except KeyboardInterrupt:
        state.status = "interrupted"
        state.reason = f"interrupted in wave {state.finished_waves + 1} of {len(state.waves)}"
        raise
    finally:
        if state.status == "running":  # an error: resumable like an interruption
            state.status, state.reason = "interrupted", f"stopped by an error in wave {state.finished_waves + 1}"
        state.save(folder)
        result.finished_waves, result.reason, result.devices = state.finished_waves, state.reason, state.devices
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _resumable(state: RolloutState | None, inventory: str | Path, artifact: Path | None) -> RolloutState:
    if state is None:
        raise InputError(f"no rollout to {inventory} to resume", "start one: mlpack rollout ARTIFACT --fleet FLEET")
    if state.status == "finished":
        raise InputError(f"the last rollout to {inventory} ({state.version}) finished at {state.updated_at:%Y-%m-%d %H:%M}",
                         "nothing to resume; roll out a new artifact instead")
    if artifact is not None and Path(artifact).resolve() != Path(state.artifact):
        try:
            same = read_release(Path(artifact)).version == state.version
        except MlpackError:
            same = False
        if not same:
            raise InputError(f"the rollout to resume is {state.version} from {state.artifact}, not {artifact}",
                             "resume without an artifact, or roll this one out anew (without --resume)")
    return state


def _stop_reason(state: RolloutState, wave: list[str], budget: UnreachableBudget) -> str:
    """Why the rollout stops after this wave ('' to go on)."""
    failed = [h for h in wave if state.devices[h].get("status") in FAILED]
    unreachable = [h for h in wave if state.devices[h].get("status") == "unreachable"]
    reasons = []
    if failed:
        reasons.append(f"{', '.join(failed)} failed")
    if len(unreachable) > budget.allowed(len(wave)):
        reasons.append(f"{', '.join(unreachable)} unreachable ({len(unreachable)} of {len(wave)}, "
                       f"--max-unreachable {budget})")
    return "; ".join(reasons)


def _log_tail(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


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
