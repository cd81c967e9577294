#!/usr/bin/env python3
"""mlpack's device guard: a switch of `current` that is not confirmed in time is undone by the device.

`mlpack rollout` runs this file on every device (standard library only: it runs with the
device's Python, sent by Ansible's `script` for each call, no Ansible module around it) for
all it does there but the unpack, the restart and the health gate; `switch --install`
leaves a copy at ROOT/rollout/guard.py for the watcher and the units' boot check. The
state of the last switch is ROOT/rollout/switch.json:

    {"id": ..., "from": OLD, "to": NEW, "state": "pending" | "confirmed" | "reverted",
     "deadline": unix time, "timeout_s": ..., "restart": [[argv], ...]}

- `inspect ROOT NEW` (writes nothing): JSON with the version `current` points at, the last
  switch, whether versions/NEW is complete (it has its manifest.json), and the free disk
  where versions/ is (or the nearest folder above it that exists).
- `prepare ROOT NEW`: an empty versions/.NEW.partial (an earlier attempt's removed first).
- `place ROOT NEW`: versions/.NEW.partial renamed to versions/NEW, once it is complete.
- `switch ROOT NEW --previous OLD --timeout S --restart JSON [--install]`: (install this
  file as ROOT/rollout/guard.py,) record a pending switch (deadline now + S), move
  `current` to versions/NEW atomically (a new link renamed over the old one), and start a
  watcher that outlives the SSH session.
- `confirm ROOT NEW`: the health gate passed; the switch stays. Refused (exit 1) if the
  device already reverted it.
- `revert ROOT`: the control node's rollback: `current` back to OLD (it restarts itself).
- `watch ROOT ID` (the watcher): at the deadline, if switch ID is still pending, move
  `current` back to OLD and restart the service and agent with the recorded commands.
  A device cut off between the switch and its health gate heals without the control node.
- `boot ROOT` (the systemd units' ExecStartPre, on every start): a pending switch past its
  deadline is reverted before anything starts (a device that lost power mid-update comes
  back on the old version); one still within it gets its watcher again.
- `status ROOT`: JSON with `current` and the switch.
- `prune ROOT --keep V...`: remove the version folders other than those kept and the one
  `current` points at.

Every command takes ROOT/rollout/lock (flock), so the watcher, the boot check and the
control node never act on the same switch at once. The guard writes its log to
ROOT/rollout/guard.log.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

WATCH_POLL_S = 1.0


class Device:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.dir = self.root / "rollout"
        self.state_file = self.dir / "switch.json"
        self.current = self.root / "current"
        self.versions = self.root / "versions"
        self.installed = self.dir / "guard.py"

    # -- state -------------------------------------------------------------------------

    @contextmanager
    def locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def switch_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def save(self, state: dict) -> None:
        write_durably(self.state_file, json.dumps(state, indent=2).encode())

    def current_version(self) -> str:
        try:
            return os.path.basename(os.readlink(self.current))
        except OSError:
            return ""

    def point_current_at(self, version: str) -> None:
        """`current` -> versions/<version>, atomically: a new link renamed over the old one."""
        if not (self.root / "versions" / version).is_dir():
            raise SystemExit(f"guard: {self.root}/versions/{version} does not exist")
        tmp = self.root / f".current.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"versions/{version}", tmp)
        os.replace(tmp, self.current)
        fsync_dir(self.root)

    def log(self, message: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with open(self.dir / "guard.log", "a") as handle:
            handle.write(f"{stamp} {message}\n")

    # -- what happens to a pending switch ----------------------------------------------

    def revert_pending(self, state: dict, why: str) -> bool:
        """Move `current` back to the switch's previous version (caller holds the lock)."""
        if state.get("state") != "pending":
            return False
        previous = state.get("from") or ""
        if previous and (self.root / "versions" / previous).is_dir():
            self.point_current_at(previous)
            self.log(f"reverted {state.get('to')} -> {previous}: {why}")
        else:
            self.log(f"cannot revert {state.get('to')}: no previous version to go back to ({why})")
        state["state"] = "reverted"
        state["reverted_at"] = time.time()
        state["reason"] = why
        self.save(state)
        return True

    def watcher_running(self, state: dict) -> bool:
        """A watcher for this switch is alive (a restart within the deadline starts none)."""
        try:
            pid = int((self.dir / "watcher.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        return b"watch" in cmdline and state["id"].encode() in cmdline

    def spawn_watcher(self, state: dict) -> None:
        """Start `watch` detached from this session (and from Ansible's SSH connection)."""
        if self.watcher_running(state):
            return
        # The installed copy: the one Ansible sent for this call is removed after it.
        guard = self.installed if self.installed.is_file() else Path(os.path.abspath(__file__))
        argv = [sys.executable, str(guard), "watch", str(self.root), state["id"]]
        if Path("/run/systemd/system").is_dir() and shutil.which("systemd-run"):
            # A transient unit: outside the login session, so logging out cannot end it.
            unit = f"mlpack-guard-{state['id'][:12]}"
            done = subprocess.run(["systemd-run", "--quiet", "--collect", f"--unit={unit}", *argv],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode == 0:
                return
            self.log(f"systemd-run failed ({done.stderr.decode(errors='replace').strip()[-200:]}); "
                     "watching from a detached process instead")
        log = open(self.dir / "guard.log", "a")
        watcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                   close_fds=True, cwd="/")
        log.close()
        (self.dir / "watcher.pid").write_text(str(watcher.pid))


def remaining_s(state: dict) -> float:
    """Seconds until the deadline, never more than the switch's own timeout (a device
    without a real-time clock may boot with its clock far behind)."""
    left = float(state.get("deadline", 0)) - time.time()
    return min(left, float(state.get("timeout_s", left)))


def write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- commands --------------------------------------------------------------------------


def cmd_inspect(device: Device, args: argparse.Namespace) -> dict:
    where = device.versions
    while not where.exists():
        where = where.parent
    disk = os.statvfs(where)
    return {"current": device.current_version(), "switch": device.switch_state(),
            "have_version": (device.versions / args.version / "manifest.json").is_file(),
            "free_bytes": disk.f_bavail * disk.f_frsize, "free_path": str(where)}


def partial(device: Device, version: str) -> Path:
    return device.versions / f".{version}.partial"


def cmd_prepare(device: Device, args: argparse.Namespace) -> dict:
    folder = partial(device, args.version)
    shutil.rmtree(folder, ignore_errors=True)  # what an unpack cut short (a power cut, a full disk) left
    folder.mkdir(mode=0o755, parents=True)
    return {"partial": str(folder)}


def cmd_place(device: Device, args: argparse.Namespace) -> dict:
    # A rename, like `mv -T`: a version folder is complete or absent.
    os.rename(partial(device, args.version), device.versions / args.version)
    fsync_dir(device.versions)
    return {"placed": str(device.versions / args.version)}


def install(device: Device) -> None:
    """This file as ROOT/rollout/guard.py (what the watcher and the units' boot check run)."""
    source = Path(os.path.abspath(__file__)).read_bytes()
    device.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    if not device.installed.is_file() or device.installed.read_bytes() != source:
        write_durably(device.installed, source)
    device.installed.chmod(0o755)


def cmd_switch(device: Device, args: argparse.Namespace) -> dict:
    if args.install:
        install(device)
    with device.locked():
        state = {
            "id": uuid.uuid4().hex, "from": args.previous, "to": args.version, "state": "pending",
            "switched_at": time.time(), "deadline": time.time() + args.timeout, "timeout_s": args.timeout,
            "restart": json.loads(args.restart),
        }
        device.save(state)  # first: a power cut right after the move still finds the switch
        device.point_current_at(args.version)
        device.log(f"switched {args.previous or '(none)'} -> {args.version}; reverts unless confirmed "
                   f"within {args.timeout:.0f} s")
        device.spawn_watcher(state)
    return {"switched": True, "id": state["id"], "deadline": state["deadline"]}


def cmd_confirm(device: Device, args: argparse.Namespace) -> dict:
    with device.locked():
        state = device.switch_state()
        if state.get("to") != args.version or state.get("state") not in ("pending", "confirmed"):
            raise SystemExit(f"guard: the switch to {args.version} was already reverted by the device "
                             f"({state.get('reason', 'not pending')}); it runs {device.current_version() or 'nothing'}")
        if state["state"] == "pending":
            state.update(state="confirmed", confirmed_at=time.time())
            device.save(state)
            device.log(f"confirmed {args.version}: it passed its health gate")
    return {"confirmed": True}


def cmd_revert(device: Device, args: argparse.Namespace) -> dict:
    with device.locked():
        state = device.switch_state()
        reverted = device.revert_pending(state, args.reason)
    return {"reverted": reverted, "current": device.current_version()}


def cmd_watch(device: Device, args: argparse.Namespace) -> dict:
    # The time left is read before the monotonic clock, so the end is never earlier than the
    # deadline (the other order lost the state file's read time: a revert 3 ms early).
    left = remaining_s(device.switch_state())
    end = time.monotonic() + left  # immune to the clock being set meanwhile
    while True:
        state = device.switch_state()
        if state.get("id") != args.id or state.get("state") != "pending":
            return {"watching": False}  # confirmed, reverted, or replaced by a newer switch
        if time.monotonic() >= end:
            break
        time.sleep(min(WATCH_POLL_S, max(0.05, end - time.monotonic())))
    with device.locked():
        state = device.switch_state()
        if state.get("id") != args.id or not device.revert_pending(
                state, f"not confirmed within {float(state.get('timeout_s', 0)):.0f} s"):
            return {"watching": False}
    for argv in state.get("restart") or []:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        device.log(f"restart {' '.join(argv)}: exit {done.returncode} {done.stderr.strip()[-300:]}")
    return {"reverted": True}


def cmd_boot(device: Device, args: argparse.Namespace) -> dict:
    with device.locked():
        state = device.switch_state()
        if state.get("state") != "pending":
            return {"pending": False}
        if remaining_s(state) <= 0:
            device.revert_pending(state, "not confirmed before the deadline (found at start)")
            return {"reverted": True}
        state["deadline"] = time.time() + remaining_s(state)  # on this boot's clock
        device.save(state)
        device.log(f"start during a pending switch to {state.get('to')}: watching it again "
                   f"({remaining_s(state):.0f} s left)")
        device.spawn_watcher(state)
    return {"pending": True}


def cmd_status(device: Device, args: argparse.Namespace) -> dict:
    return {"current": device.current_version(), "switch": device.switch_state()}


def cmd_prune(device: Device, args: argparse.Namespace) -> dict:
    keep = {*args.keep, device.current_version()}
    removed = []
    if device.versions.is_dir():
        for folder in sorted(device.versions.iterdir()):
            # Hidden folders (an unpack in progress) are not versions.
            if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith(".") \
                    and folder.name not in keep:
                shutil.rmtree(folder)
                removed.append(folder.name)
    return {"removed": removed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guard.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("switch")
    p.add_argument("root")
    p.add_argument("version")
    p.add_argument("--previous", default="")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--restart", default="[]", help="JSON list of argv lists that restart the service and agent")
    p.add_argument("--install", action="store_true", help="first install this file as ROOT/rollout/guard.py")
    p = sub.add_parser("confirm")
    p.add_argument("root")
    p.add_argument("version")
    p = sub.add_parser("revert")
    p.add_argument("root")
    p.add_argument("--reason", default="rolled back by the control node")
    p = sub.add_parser("watch")
    p.add_argument("root")
    p.add_argument("id")
    for name in ("inspect", "prepare", "place"):
        p = sub.add_parser(name)
        p.add_argument("root")
        p.add_argument("version")
    p = sub.add_parser("prune")
    p.add_argument("root")
    p.add_argument("--keep", action="append", default=[])
    for name in ("boot", "status"):
        sub.add_parser(name).add_argument("root")
    args = parser.parse_args(argv)
    command = {"switch": cmd_switch, "confirm": cmd_confirm, "revert": cmd_revert, "watch": cmd_watch,
               "boot": cmd_boot, "status": cmd_status, "inspect": cmd_inspect, "prepare": cmd_prepare,
               "place": cmd_place, "prune": cmd_prune}[args.command]
    print(json.dumps(command(Device(args.root), args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
