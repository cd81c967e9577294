"""A Lambda function's cold start, measured on the zip that ships, as Lambda runs it (TOOL).

The zip is unpacked into a read-only folder (Lambda's `/var/task` is read-only: nothing
is compiled or cached there at run time), and fresh processes of an interpreter of the
function's Python version and architecture run it under awslambdaric, the runtime
interface client of Lambda's Python runtimes, against the local Runtime API
(`emulator.py`), each on one CPU. Each run reports its init (process start to the
runtime's first request: interpreter, imports, the handler's module code with the
session) and its first invoke (event handed out to answer received), and the process's
peak RSS and CPU time. One more run under `-X importtime` shows where the import time goes.

awslambdaric itself comes from the package index, installed for the function's platform
into a folder of its own with its bytecode compiled, as `/var/runtime` is in Lambda.
"""

from __future__ import annotations

import glob
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .bytecode import compile_folder
from ..errors import MlpackError
from mlpack.awslambda.emulator import RuntimeAPI
from ..manifest import ColdStart, ImportCost
from ..uv import install_for_platform

RUNTIME_CLIENT = "awslambdaric"
HANDLER = "handler.handler"
TASK_ROOT = "/var/task"  # where Lambda unpacks a zip: bytecode names its files there
RUNTIME_ROOT = "/var/runtime"
TOP_IMPORTS = 5  # report.md lists this many of the most expensive imports
RUN_TIMEOUT_S = 300.0  # one fresh process, from start to its first answer


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.12"
    machine: str  # platform.machine(): x86_64, aarch64
    emulated: bool  # runs under qemu-user (binfmt), not on this machine's CPU


@dataclass(frozen=True)
class Run:
    init_s: float
    invoke_s: float
    total_s: float
    peak_rss_mb: float
    reply: Any
    cpu_s: float = math.nan  # the process's CPU time (user + system) up to its answer: steadier under load


def _probe(exe: str) -> tuple[str, str] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())"],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (parts[0], parts[1]) if out.returncode == 0 and len(parts) == 2 else None


def find_python(version: str, arch: str | None = None) -> Interpreter | None:
    """An interpreter of `version` on this machine (and of `arch`, when given), if any.

    MLPACK_LAMBDA_PYTHON names interpreters to try first (os.pathsep-separated), e.g. an
    aarch64 python3.12 that binfmt runs under qemu; then python{version} on PATH, this
    interpreter, and pyenv's."""
    listed = [p for p in os.environ.get("MLPACK_LAMBDA_PYTHON", "").split(os.pathsep) if p]
    candidates = [*listed, shutil.which(f"python{version}")]
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.append(sys.executable)
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    host = platform.machine()
    seen = set()
    for exe in filter(None, candidates):
        if exe in seen:
            continue
        seen.add(exe)
        found = _probe(exe)
        if found and found[0] == version and (arch is None or found[1] == arch):
            return Interpreter(exe, found[0], found[1], emulated=found[1] != host)
    return None


def not_measured(reason: str) -> ColdStart:
    return ColdStart(seconds=None, peak_rss_mb=None, runs=0, python=None, note=f"not measured: {reason}")


def install_runtime_client(dest: Path, python_platform: str, python_version: str, python: Interpreter) -> Path:
    """awslambdaric for the function's platform, compiled, in a folder of its own."""
    install_for_platform(dest, python_platform=python_platform, python_version=python_version,
                         packages=[RUNTIME_CLIENT], what="fetching awslambdaric to measure the cold start")
    compile_folder(dest, python.path, RUNTIME_ROOT)
    return dest


def unpack_read_only(zip_path: Path, dest: Path) -> Path:
    """The zip as Lambda lays it out: unpacked, nothing writable."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    for path in [dest, *dest.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
    return dest


def make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def _environment(api: RuntimeAPI, task: Path, runtime: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": tempfile.gettempdir(),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "LAMBDA_TASK_ROOT": str(task),
        # Lambda's sys.path order: the function's code first, then the runtime's.
        "PYTHONPATH": os.pathsep.join([str(task), str(runtime)]),
        # The task folder is read-only in Lambda; as root here, say it to Python as well.
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_LAMBDA_FUNCTION_NAME": "mlpack-cold-start",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        # As the IaC deploys a zip without the agent's extension layer (its default).
        "MLPACK_AGENT_DISABLED": "1",
        "MLPACK_AGENT_SOCKET": str(task / ".no-agent.sock"),
        **extra,
    }


def _has_outputs(reply: Any) -> bool:
    return isinstance(reply, dict) and "outputs" in reply


def run_once(python: Interpreter, task: Path, runtime: Path, event: Any, *, flags: tuple[str, ...] = (),
             env: dict[str, str] | None = None, correct: Callable[[Any], bool] = _has_outputs,
             command: list[str] | None = None, cwd: Path | None = None) -> tuple[Run, str]:
    """One fresh process from exec to its first answer; the run and the process's stderr.

    `command` replaces `python -m awslambdaric handler.handler` (e.g. an image's entry
    point, chrooted into its root file system, with `task` and `runtime` its paths there)."""
    api = RuntimeAPI()
    request = api.queue_event(event)
    argv = command or [python.path, "-s", *flags, "-m", RUNTIME_CLIENT, HANDLER]
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd or task,
                                env=_environment(api, task, runtime, env or {}), stdout=subprocess.DEVNULL,
                                stderr=err, preexec_fn=_one_cpu)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while (request not in api.answered and api.init_error is None and proc.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.002)  # the times come from the Runtime API's own clock, not this loop
            peak_mb = _peak_rss_mb(proc.pid) if request in api.answered else math.nan
            cpu_s = _cpu_seconds(proc.pid) if request in api.answered else math.nan
        finally:
            proc.kill()
            proc.wait()
            api.close()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if request not in api.answered:
        detail = _last_line(api.init_error, stderr) or "no answer"
        raise MlpackError(f"the packaged Lambda handler failed under awslambdaric: {detail}",
                          "rerun with --debug; check that the model runs in onnxruntime on this platform")
    status, reply = api.result(request, timeout=1)
    if status != "response" or not correct(reply):
        raise MlpackError(f"the packaged Lambda handler answered its first request with {str(reply)[:300]}",
                          "rerun with --debug; check that the model runs in onnxruntime on this platform")
    run = Run(
        init_s=api.first_request_at - started,
        invoke_s=api.answered[request] - api.handed_out[request],
        total_s=api.answered[request] - started,
        peak_rss_mb=peak_mb,
        reply=reply,
        cpu_s=cpu_s,
    )
    return run, stderr


def _one_cpu() -> None:
    """Run on one CPU, as a function of 1,769 MB has one vCPU: onnxruntime's default thread
    pool (one thread per core of this machine) would otherwise make a handler that keeps
    the defaults look faster here than it is on Lambda."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    """The process's own peak RSS (VmHWM). Not the rusage of the reaped child: Linux keeps
    a child's ru_maxrss across exec, so it would count the forking build's memory."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return math.nan
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _last_line(init_error: Any, stderr: str) -> str:
    if isinstance(init_error, dict) and init_error.get("errorMessage"):
        return f"{init_error.get('errorType', 'error')}: {init_error['errorMessage']}"[:300]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def top_imports(importtime_log: str, count: int = TOP_IMPORTS) -> list[ImportCost]:
    """The packages whose modules took longest to import (their own time, summed), from
    `python -X importtime` output; the sums do not overlap and add up to the total."""
    by_package: dict[str, list[float]] = {}
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        package = fields[2].strip().split(".")[0]
        by_package.setdefault(package, []).append(int(fields[0]) / 1e6)
    ranked = sorted(by_package.items(), key=lambda item: -sum(item[1]))[:count]
    return [ImportCost(package=name, seconds=round(sum(times), 4), modules=len(times)) for name, times in ranked]


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def measure_zip(zip_path: Path, python: Interpreter, runtime: Path, event: Any, work: Path, runs: int,
                log: Callable[[str], None] = lambda _line: None) -> ColdStart:
    """`runs` fresh processes on the unpacked, read-only zip; medians, p90, peak, imports."""
    task = unpack_read_only(zip_path, work / "task")
    try:
        results = []
        for index in range(runs):
            run, _ = run_once(python, task, runtime, event)
            results.append(run)
            log(f"cold start run {index + 1}/{runs}: init {run.init_s:.3f}s, first invoke {run.invoke_s:.3f}s")
        _, importtime_log = run_once(python, task, runtime, event, flags=("-X", "importtime"))
    finally:
        make_writable(task)
        shutil.rmtree(task, ignore_errors=True)
    totals = [r.total_s for r in results]
    where = "under qemu emulation (not the target CPU's speed)" if python.emulated else "on this machine"
    return ColdStart(
        seconds=round(statistics.median(totals), 3),
        p90_seconds=round(p90(totals), 3),
        init_seconds=round(statistics.median(r.init_s for r in results), 3),
        invoke_seconds=round(statistics.median(r.invoke_s for r in results), 4),
        peak_rss_mb=round(max(r.peak_rss_mb for r in results), 1),
        runs=runs,
        python=python.path,
        emulated=python.emulated,
        imports=top_imports(importtime_log),
        note=(f"median of {runs} fresh processes running function.zip read-only under awslambdaric and a local "
              f"Runtime API, {where} on one CPU, as deployed without the agent layer: init (interpreter, imports, "
              "session) + first invoke"),
    )
