"""Builds that clean up after a crash (issue 21, findings 6 and 7).

A killed process leaves its staged `.NAME.PID-XXXXXXXX.partial` folder and its scratch
folders (`mlpack-WHAT.PID-XXXXXXXX`, e.g. the private BentoML home) behind; the next build
removes them, never a live process's. A failed build leaves no empty --out folder, and
`--force` replaces a link (live or dangling) with the new artifact, in one clear line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.fsutil import sweep

from .faults import nodeid, record_fault
from .models import linear_model

runner = CliRunner()
ARTIFACT = "linear-x86-cpu"


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


HOLDER = """
import subprocess, sys, time
from pathlib import Path
from mlpack.fsutil import scratch_folder, staged_folder
with staged_folder(Path(sys.argv[1])) as staged, scratch_folder("test", Path(sys.argv[2])) as scratch:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(scratch.fd,))
    print(staged.name, scratch.path.name, child.pid, flush=True)
    time.sleep(120)
"""


def test_a_live_processs_folders_are_never_swept_and_a_killed_ones_are(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "model-x86-cpu"), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        staged, scratch, child = holder.stdout.readline().split()
        assert staged.startswith(f".model-x86-cpu.{holder.pid}-") and staged.endswith(".partial")
        assert scratch.startswith(f"mlpack-test.{holder.pid}-")
        assert sweep(tmp_path) == []  # alive: untouched

        holder.kill()
        holder.wait(timeout=30)
        # The holder is dead; the child it handed the scratch folder's lock to is not.
        assert sweep(tmp_path) == [staged]
        assert (tmp_path / scratch).is_dir()

        os.kill(int(child), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (tmp_path / scratch).exists() and time.monotonic() < deadline:  # the kernel drops the lock at exit
            sweep(tmp_path)
            time.sleep(0.05)
        assert sorted(os.listdir(tmp_path)) == []
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_folder_replaced_by_a_killed_swap_is_put_back_or_removed(tmp_path: Path) -> None:
    pid = dead_pid()
    (tmp_path / f".a-x86-cpu.old-{pid}").mkdir()  # killed between the two renames: no a-x86-cpu
    (tmp_path / f".a-x86-cpu.old-{pid}" / "manifest.json").write_text("{}")
    (tmp_path / "b-x86-cpu").mkdir()  # killed after the second rename: the old one is litter
    (tmp_path / f".b-x86-cpu.old-{pid}").symlink_to(tmp_path / "elsewhere")
    (tmp_path / f".c-x86-cpu.old-{os.getpid()}").mkdir()  # a live process's: untouched

    assert sweep(tmp_path) == [f".a-x86-cpu.old-{pid} (put back as a-x86-cpu)", f".b-x86-cpu.old-{pid}"]
    assert sorted(os.listdir(tmp_path)) == [f".c-x86-cpu.old-{os.getpid()}", "a-x86-cpu", "b-x86-cpu"]
    assert (tmp_path / "a-x86-cpu" / "manifest.json").is_file()


def test_a_build_that_fails_on_its_calibration_leaves_no_empty_out_folder(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    np.savez(tmp_path / "bad.npz", wrong=np.zeros((4, 4), np.float32))
    out = tmp_path / "new" / "out"
    done = runner.invoke(app, ["build", str(model), "--target", "x86-cpu", "--out", str(out),
                               "--calibration", str(tmp_path / "bad.npz"), "-q"])
    assert done.exit_code == 2 and "has array 'wrong', which is not a model input" in done.output
    left = [p for p in (out, out.parent) if p.exists()]
    assert left == []
    record_fault("calibration-fails", nodeid(), "mlpack build into a new --out folder (two levels) with a "
                 "calibration file whose array is not a model input", done.output.strip().splitlines()[-1],
                 len(left), "neither --out nor its new parent left behind")


@pytest.mark.slow
def test_force_replaces_a_link_to_an_artifact_or_a_dangling_one_in_one_line(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (elsewhere / ARTIFACT).mkdir(parents=True)
    (elsewhere / ARTIFACT / "manifest.json").write_text("{}")
    out.mkdir()
    (out / ARTIFACT).symlink_to(elsewhere / ARTIFACT)

    def build(*options: str):
        return runner.invoke(app, ["build", str(model), "--target", "x86-cpu", "--out", str(out), *options])

    done = build("--force")
    assert done.exit_code == 0, done.output
    assert f"--force: {ARTIFACT} is a link to {elsewhere / ARTIFACT}: the new artifact replaces the link" \
        in done.output
    assert os.listdir(out) == [ARTIFACT] and not (out / ARTIFACT).is_symlink()  # no stray .old-PID link
    assert (elsewhere / ARTIFACT / "manifest.json").read_text() == "{}"  # what it pointed to is kept

    (out / ARTIFACT).rename(tmp_path / "built")
    (out / ARTIFACT).symlink_to(tmp_path / "nowhere")
    done = build()
    lines = done.output.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.output
    assert lines[0] == (f"error: {out / ARTIFACT} is a link to {tmp_path / 'nowhere'}, which does not exist; "
                        "pass --force to replace the link with the new artifact (what it points to is kept), "
                        "or choose another --out or --name")
    done = build("--force", "-q")
    assert done.exit_code == 0, done.output
    stray = [name for name in os.listdir(out) if name != ARTIFACT]
    assert stray == [] and (out / ARTIFACT / "manifest.json").is_file()
    record_fault("force-over-link", nodeid(), "mlpack build --force where NAME-TARGET is a link to an artifact "
                 "elsewhere, then a dangling link (with and without --force)", lines[0], len(stray),
                 "no .old-PID link left; each link replaced by the new artifact, what it pointed to kept")


# ---- kill -9 of real builds ---------------------------------------------------------------

# Moments to kill at, by what the build has printed (and, for the Bento, by the folder its
# child works in): structure, not time.
MOMENTS = [
    ("building the Bento", "• Building the Bento", "mlpack-bentoml-home."),
    ("writing the SBOM", "• Writing the software bill of materials", None),
    ("rendering, before the manifest", "• Rendering", None),
]


def _build(model: Path, out: Path, tmp: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("mlpack")
    return subprocess.Popen([str(exe), "build", str(model), "--target", "x86-cpu", "--out", str(out), "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(tmp), "MLPACK_PROGRESS": "plain"})


def _wait_for_group(pgid: int, timeout_s: float = 120) -> None:
    """Until every process of the killed build's session has ended (its orphaned children too)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of group {pgid} still running after {timeout_s} s")


def _kill_at(model: Path, out: Path, tmp: Path, line_start: str, folder_prefix: str | None) -> list[str]:
    """Run a build, kill -9 it at the moment given, wait for its children; returns what it left."""
    before = set(os.listdir(out)) | set(os.listdir(tmp))
    proc = _build(model, out, tmp)
    try:
        for line in proc.stdout:
            if line.startswith(line_start):
                break
        else:
            raise AssertionError(f"the build ended before printing {line_start!r}")
        deadline = time.monotonic() + 60
        while folder_prefix and not any(n.startswith(folder_prefix) for n in os.listdir(tmp)):
            assert time.monotonic() < deadline, f"no {folder_prefix}* folder appeared"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for_group(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    return sorted((set(os.listdir(out)) | set(os.listdir(tmp))) - before)


@pytest.mark.slow
def test_builds_killed_at_three_moments_leave_nothing_once_the_next_build_ran(tmp_path: Path) -> None:
    model = linear_model(tmp_path / "linear.onnx")
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    first = _build(model, out, tmp)
    assert first.wait(timeout=600) == 0, first.stdout.read()
    first.stdout.close()
    baseline = set(os.listdir(tmp))  # what a whole build leaves in TMPDIR (onnxruntime's .ses telemetry id)
    assert not any(name.startswith("mlpack-") for name in baseline)

    left: dict[str, list[str]] = {}
    for moment, line_start, folder_prefix in MOMENTS:
        left[moment] = _kill_at(model, out, tmp, line_start, folder_prefix)
        # The artifact the killed build would have replaced is whole.
        done = runner.invoke(app, ["verify", str(out / ARTIFACT)])
        assert done.exit_code == 0, (moment, done.output)
    assert any(name.endswith(".partial") for names in left.values() for name in names), left
    assert any(name.startswith("mlpack-bentoml-home.") for name in left["building the Bento"]), left

    final = _build(model, out, tmp)
    output = final.stdout.read()
    final.stdout.close()
    assert final.wait(timeout=600) == 0, output
    removed = next(line for line in output.splitlines() if line.startswith("Removed what killed mlpack"))
    remaining = sorted((set(os.listdir(out)) - {ARTIFACT}) | (set(os.listdir(tmp)) - baseline))
    assert remaining == [] and os.listdir(out) == [ARTIFACT]
    littered = sum(len(names) for names in left.values())
    record_fault("build-killed", nodeid(),
                 f"kill -9 of `mlpack build --force` (the linear model, x86-cpu) at {len(MOMENTS)} moments: "
                 f"{', '.join(left)}; each waited for its orphaned children (bentoml) to end; then one more build",
                 removed, len(remaining), f"{littered} folders left by the {len(MOMENTS)} kills ("
                 + "; ".join(f"{m}: {len(n)}" for m, n in left.items())
                 + "), all removed by the next build; the artifact verified after every kill")
