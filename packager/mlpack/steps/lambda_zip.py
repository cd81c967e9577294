"""The `lambda-zip` step (runs uv and interpreters): the function's zip, and its cold start.

`uv` fetches the target's wheels (manylinux, the function's Python), and fresh
interpreters of that Python version run the packaged handler to time its cold start.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Sequence

from ..app import write_app
from ..errors import MlpackError
from ..limits import LAMBDA_UNZIPPED_LIMIT, LAMBDA_UNZIPPED_LIMIT_TEXT, LAMBDA_ZIP_LIMIT, LAMBDA_ZIP_LIMIT_TEXT
from ..manifest import ColdStart, LambdaSection, Manifest
from ..model_info import Signature
from ..processing.packages import prune_for_lambda
from ..render import RenderContext
from ..sizes import format_size
from ..targets import Target
from ..uv import install_for_platform
from . import StepContext

ZIP = "lambda/function.zip"
APP = "lambda/app"


# Parts of the wheels a handler never imports: tools, training helpers, tests, headers.
_PRUNE = [
    "onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization",
    "onnxruntime/datasets", "onnxruntime/backend", "numpy/_pyinstaller", "numpy/f2py",
    "numpy/typing/tests", "numpy/_core/include", "numpy/_core/lib/pkgconfig", "bin",
]
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries with a fixed time make the zip reproducible


class LambdaZipStep:
    name = "lambda-zip"
    section = "lambda_"
    writes = (f"{APP}/", ZIP)

    def describe(self, manifest: Manifest) -> str:
        platform = manifest.target.platform
        return (f"Packaging the Lambda zip (python{platform.python_version}, {platform.python_platform}) "
                "and measuring its cold start")

    def run(self, ctx: StepContext) -> LambdaSection:
        m = ctx.manifest
        app, site = ctx.root / APP, ctx.work / "lambda-site"
        write_app(app, RenderContext.from_manifest(m), ctx.model, ctx.root)
        install_wheels(m.target, m.requirements.runtime, site, no_deps=m.requirements.processing)
        size = write_zip(ctx.root / ZIP, app, site)
        ctx.log(f"function.zip: {format_size(size)} (limit {LAMBDA_ZIP_LIMIT_TEXT})")
        event = {"inputs": m.processing.sample} if m.processing else sample_event(m.model.signature)
        cold = measure_cold_start(app, site, m.target.platform.python_version, event)
        ctx.log(f"cold start: {cold.seconds}s, peak memory {cold.peak_rss_mb} MB" if cold.seconds else cold.note)
        if ctx.options.max_cold_start is not None:
            enforce_cold_start(cold, ctx.options.max_cold_start)
        return LambdaSection(zip=ZIP, cold_start=cold)


def enforce_cold_start(cold: ColdStart, budget: float) -> None:
    if cold.seconds is None:
        raise MlpackError(f"--max-cold-start {budget}s cannot be checked: {cold.note}")
    if cold.seconds > budget:
        raise MlpackError(
            f"cold start {cold.seconds:.3f}s exceeds --max-cold-start {budget}s",
            "choose a smaller variant or raise the budget",
        )


def install_wheels(target: Target, packages: list[str], dest: Path, no_deps: Sequence[str] = ()) -> None:
    """Install the target platform's wheels into dest, without running anything built;
    `no_deps` without their dependencies (the processing's, which only download need)."""
    install_for_platform(
        dest, python_platform=target.platform.python_platform, python_version=target.platform.python_version,
        packages=packages, what="fetching the Lambda zip's wheels",
    )
    if no_deps:
        install_for_platform(
            dest, python_platform=target.platform.python_platform, python_version=target.platform.python_version,
            packages=no_deps, no_deps=True, what="fetching the processing's wheels",
        )
        prune_for_lambda(dest, list(no_deps))
    for relative in _PRUNE:
        shutil.rmtree(dest / relative, ignore_errors=True)
    for cache in list(dest.rglob("__pycache__")) + list(dest.rglob("tests")):
        shutil.rmtree(cache, ignore_errors=True)


def write_zip(zip_path: Path, *folders: Path) -> int:
    """Zip the folders' contents side by side at the zip's root. Returns the zip's size."""
    entries: dict[str, Path] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                entries[path.relative_to(folder).as_posix()] = path
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name].read_bytes())
    size = zip_path.stat().st_size
    unzipped = sum(p.stat().st_size for p in entries.values())
    if size > LAMBDA_ZIP_LIMIT or unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise MlpackError(
            f"the Lambda zip is {format_size(size)} ({format_size(unzipped)} unzipped), over Lambda's "
            f"{LAMBDA_ZIP_LIMIT_TEXT} upload / {LAMBDA_UNZIPPED_LIMIT_TEXT} unzipped limits",
            "deploy the container image instead (container/Dockerfile)",
        )
    return size


def find_python(version: str) -> str | None:
    """An interpreter of the function's Python version on this machine, if there is one."""
    candidates = [os.environ.get("MLPACK_LAMBDA_PYTHON"), shutil.which(f"python{version}")]
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.insert(1, sys.executable)
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for exe in filter(None, candidates):
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return exe
    return None


def sample_event(signature: Signature) -> dict:
    """A direct-invoke event the model accepts: zeros, with free axes of size 1."""
    import numpy as np

    inputs = {}
    for spec in signature.inputs:
        shape = [d if isinstance(d, int) else 1 for d in (spec.shape or [1])]
        inputs[spec.name] = np.zeros(shape, dtype=spec.dtype).tolist()
    return {"inputs": inputs}


# Runs in the fresh interpreter: import the handler (init: imports, session), answer once.
_PROBE = """
import json, resource, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import handler
reply = handler.handler(json.loads(sys.argv[3]), None)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": "outputs" in reply, "reply": str(reply)[:300], "peak_kb": peak_kb}))
"""


def measure_cold_start(
    app: Path, site: Path, python_version: str, event: dict, runs: int = 3
) -> ColdStart:
    """Time fresh processes from exec to first answer; the median of `runs` is reported."""
    exe = find_python(python_version)
    if exe is None:
        return ColdStart(
            seconds=None, peak_rss_mb=None, runs=0, python=None,
            note=f"not measured: no Python {python_version} interpreter on this machine "
            "(set MLPACK_LAMBDA_PYTHON)",
        )
    times, peaks = [], []
    env = {"PATH": os.environ.get("PATH", ""), "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8"}
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            [exe, "-I", "-c", _PROBE, str(app), str(site), json.dumps(event)],
            capture_output=True, text=True, env=env, timeout=300,
        )
        elapsed = time.perf_counter() - started
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        if not result or not result["ok"]:
            detail = (proc.stderr.strip().splitlines() or [result["reply"] if result else "no output"])[-1]
            raise MlpackError(
                f"the packaged Lambda handler failed its first request: {detail}",
                "rerun with --debug; check that the model runs in onnxruntime on this platform",
            )
        times.append(elapsed)
        peaks.append(result["peak_kb"] / 1024)
    return ColdStart(
        seconds=round(statistics.median(times), 3),
        peak_rss_mb=round(max(peaks), 1),
        runs=runs,
        python=exe,
        note=f"median of {runs} fresh processes: interpreter start, imports, session, first answer",
    )
