"""The fault catalogue, and what each fault test measured, for docs/reliability.md.

Every fault mlpack promises to survive has an id here. The test that injects it calls
`record_fault(...)` once its assertions have passed, with how it injected the fault, the
line the user sees (taken from the real output: the CLI, `--status`, the agent's log) and
the loss it counted. A fault the tests cannot inject here (a crash under systemd as PID 1)
is recorded with `record_not_injected(...)`: why, and what the test checks instead; the
table lists it apart, with no loss, and never counts it as measured. Results go to `build/faults/<id>.json` (or `$MLPACK_FAULT_RESULTS`);
`python -m benchmarks.fault_table` turns the latest of them into the table in
docs/reliability.md, and says which faults have no result yet.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Fault:
    id: str
    area: str  # "rollout", "systemd", "agent", "build", "trust" or "serving"
    title: str
    loss_unit: str  # what `lost` counts


FAULTS = [
    Fault("unreachable-in-wave", "rollout", "A device is unreachable in a later wave", "devices left broken"),
    Fault("cut-off-before-gate", "rollout", "A device is cut off between the switch and its health gate",
          "devices left on an unconfirmed version"),
    Fault("reboot-during-switch", "rollout", "A device loses power during the switch", "devices on a half-written version"),
    Fault("control-node-killed", "rollout", "The control node is killed mid-rollout (kill -9), then `--resume`",
          "devices not updated after --resume"),
    Fault("second-rollout", "rollout", "A second rollout to the same fleet while one runs", "rollouts started twice"),
    Fault("disk-too-small", "rollout", "A device has too little disk for the new version", "devices changed"),
    Fault("failed-health-gate", "rollout", "The new version fails its health gate on the canary", "devices left broken"),
    Fault("service-crash", "systemd", "The service or the agent crashes", "units left stopped"),
    Fault("collector-outage", "agent", "The OTLP collector is down under steady traffic (60 s in the table's run)",
          "data points"),
    Fault("agent-kill-9", "agent", "The agent is killed (kill -9) while the collector is down", "data points"),
    Fault("buffer-cap", "agent", "The disk buffer reaches its cap during an outage", "data points lost uncounted"),
    Fault("disk-full", "agent", "The agent's disk fills up during an outage", "data points lost uncounted"),
    Fault("corrupt-buffer-file", "agent", "A buffer file and a journal segment are corrupt at start",
          "data points lost uncounted"),
    Fault("build-killed", "build", "Builds are killed (kill -9) at three moments, then one more build runs",
          "folders left behind"),
    Fault("calibration-fails", "build", "A build fails on its calibration data", "folders left behind"),
    Fault("force-over-link", "build", "`--force` over an artifact folder that is a link, or a dangling one",
          "stray entries left"),
    Fault("manifest-edited", "trust", "manifest.json of a signed artifact is edited (zip path, image digest, "
          "memory)", "edited artifacts deployed"),
    Fault("forged-sender", "agent", "Another user's process sends forged events to the agent",
          "forged values believed"),
    Fault("label-flood", "agent", "A process sends 3,000 distinct label sets and 3,000 error kinds",
          "series beyond the caps"),
    Fault("datagram-flood-outage", "agent", "18,500 datagrams of new labels, kinds and classes while the collector is down",
          "bytes over the buffer cap"),
    Fault("million-rows", "serving", "A body of 1,000,000 one-element rows (3.8 MiB), 16 at once",
          "MiB over the stated bound"),
    Fault("parser-bombs-bento", "serving", "Parser bombs on every route of the Bento", "answers other than 400"),
    Fault("parser-bombs-lambda", "serving", "Parser bombs on every route of the Lambda handler",
          "answers other than 400"),
    Fault("urllib-413-bento", "serving", "Python's urllib posts 128 MiB to the Bento", "413s not read"),
    Fault("urllib-413-lambda", "serving", "Python's urllib posts 128 MiB to the local Lambda front", "413s not read"),
    Fault("slow-request-head-bento", "serving", "A request head sent a byte at a time to the Bento",
          "connections held past the deadline"),
    Fault("slow-request-head-lambda", "serving", "A request head sent a byte at a time to the local Lambda front",
          "connections held past the deadline"),
    Fault("front-200-clients", "serving", "200 clients x 5 requests at once on the local Lambda front",
          "requests reset or failed"),
]
BY_ID = {fault.id: fault for fault in FAULTS}


def results_dir() -> Path:
    return Path(os.environ.get("MLPACK_FAULT_RESULTS", REPO / "build" / "faults"))


@dataclass(frozen=True)
class FaultResult:
    id: str
    test: str  # pytest node id
    injected: str  # how the test caused the fault
    user_sees: str  # a line from the real output
    lost: float  # measured, in the fault's loss_unit
    detail: str  # what else was counted, e.g. "12,000 points sent, 12,000 received"
    at: float  # when the test passed (Unix time)
    measured: bool = True  # False: not injected (`injected` says why, `detail` what was checked instead)


def record_fault(fault_id: str, test: str, injected: str, user_sees: str, lost: float, detail: str = "") -> None:
    """Write the result of a fault test that passed (call it after the assertions)."""
    _write(FaultResult(fault_id, test, _short(injected), _short(user_sees), lost, _short(detail), time.time()))


def record_not_injected(fault_id: str, test: str, why: str, checked_instead: str) -> None:
    """Write that a fault was NOT injected, why, and what the test checked instead: the
    table lists it apart, as not measured (call it after the test's assertions)."""
    _write(FaultResult(fault_id, test, _short(why), "", 0, _short(checked_instead), time.time(), measured=False))


def _write(result: FaultResult) -> None:
    if result.id not in BY_ID:
        raise KeyError(f"unknown fault {result.id!r}: add it to tests/faults.py FAULTS")
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{result.id}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")


_TMP = re.compile(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/\s]+")


def _short(text: str) -> str:
    """One line, with the test's temporary folders shortened to TMP."""
    return _TMP.sub("TMP", " ".join(text.split()))


def read_results(folder: Path | None = None) -> dict[str, FaultResult]:
    folder = folder or results_dir()
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = json.loads(path.read_text())
        if data.get("id") in BY_ID:
            found[data["id"]] = FaultResult(**data)
    return found


def nodeid() -> str:
    """The running test's node id (pytest sets PYTEST_CURRENT_TEST)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]


# -- injection helpers shared by the fault tests -----------------------------------------


def can_mount_tmpfs() -> bool:
    """Root can mount a small tmpfs: a disk that is full after a few KiB or MiB."""
    return os.geteuid() == 0 and "tmpfs" in Path("/proc/filesystems").read_text()


NEEDS_TMPFS = {"present": can_mount_tmpfs,
               "hint": "run the tests as root (CI does): the test mounts a small tmpfs as a full disk"}


def mount_tmpfs(path: Path, size_bytes: int) -> None:
    import subprocess

    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True)


def unmount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], check=False)
