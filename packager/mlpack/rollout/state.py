"""A rollout's state on the control node, and the lock that keeps one rollout per fleet.

Per fleet (an inventory file's absolute path, or an inline host list), in
`$MLPACK_STATE_DIR` (default `$XDG_STATE_HOME/mlpack`, else `~/.local/state/mlpack`):

    rollouts/<inventory name>-<hash>/state.json   the plan, finished waves, every device's outcome
    rollouts/<inventory name>-<hash>/lock         flock'ed while a rollout runs; holds its pid

The state is rewritten (atomically) before and after each wave, so Ctrl-C or a control
node that dies leaves it showing the last finished wave: `mlpack rollout --resume`
continues from there. The lock is an flock, which the kernel releases when its holder
dies (a stale lock of a dead process is simply taken over); ansible-playbook inherits
it, so a wave still running after mlpack was killed keeps the fleet locked until it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InputError, MlpackError
from ..fsutil import atomic_write

STATE_ENV = "MLPACK_STATE_DIR"


def state_root() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "mlpack"


def fleet_id(inventory: str | Path) -> str:
    """What names one fleet: the inventory's absolute path, or the inline host list itself."""
    path = Path(inventory)
    return str(path.resolve()) if path.exists() else str(inventory)


def fleet_dir(inventory: str | Path) -> Path:
    ident = fleet_id(inventory)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(ident).name or "fleet")[:40].strip("-.") or "fleet"
    return state_root() / "rollouts" / f"{name}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class RolloutState(BaseModel):
    """One rollout to one fleet, as far as it got."""

    schema_version: Literal[1] = 1
    fleet: str
    artifact: str  # the artifact folder's absolute path
    version: str
    waves: list[list[str]]  # the hosts of each wave, planned once
    finished_waves: int = 0  # waves that ended with every device within budget
    status: Literal["running", "stopped", "interrupted", "finished"] = "running"
    reason: str = ""  # why it stopped
    devices: dict[str, dict[str, Any]] = Field(default_factory=dict)  # host -> outcome record
    options: dict[str, Any] = Field(default_factory=dict)  # health/confirm timeouts, budget, limit
    pid: int = Field(default_factory=os.getpid)
    started_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @property
    def hosts(self) -> list[str]:
        return [host for wave in self.waves for host in wave]

    def save(self, folder: Path) -> None:
        self.updated_at = _now()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "state.json", self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "RolloutState | None":
        path = folder / "state.json"
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise MlpackError(f"the rollout state {path} cannot be read ({str(exc).splitlines()[0]})",
                              "remove it and roll out again: devices already on the version are left alone") from None


class FleetLock:
    """Held for the whole rollout; refuses a second one to the same fleet with one line."""

    def __init__(self, inventory: str | Path, artifact: str) -> None:
        self.folder = fleet_dir(inventory)
        self.fleet = str(inventory)
        self.artifact = artifact
        self.fd: int | None = None

    def __enter__(self) -> "FleetLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InputError(f"a rollout to {self.fleet} is already running ({_describe(holder)})",
                             "wait for it to finish (or stop it with Ctrl-C), then roll out again or use --resume") \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "artifact": self.artifact,
                                  "since": _now().isoformat()}).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock (unless a child still holds it)
            self.fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    if not pid:
        return "holder unknown"
    where = f"pid {pid} on {holder.get('host', '?')} since {holder.get('since', '?')}, {holder.get('artifact', '?')}"
    if holder.get("host") == socket.gethostname() and not _alive(int(pid)):
        # mlpack died, its ansible-playbook did not: the wave it runs still holds the lock.
        return f"{where}; that mlpack process is gone, its ansible-playbook is finishing the wave"
    return where


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
