"""The `lambda-zip` step (runs uv and interpreters): the function's zip, and its cold start.

`uv` fetches the target's wheels (manylinux, the function's Python); what the handler
never imports is pruned (`prune.py`); an interpreter of the function's Python
version compiles the bytecode (`bytecode.py`: hash-based, so the zip's bytes are the
same at every rebuild); the zip is written with fixed entry order, times and modes; and
the zip itself is measured, unpacked read-only and run under awslambdaric as Lambda runs
it (`measure.py`). Without an interpreter of the function's Python version (and
architecture, for the measurement) the build still completes and says what it lacked.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Sequence

from ..steps.app import write_app
from .bytecode import INVALIDATION_MODE, compile_folder
from ..errors import MlpackError
from .measure import TASK_ROOT, find_python, install_runtime_client, measure_zip, not_measured
from .prune import Pruned, prune, prune_rules
from ..limits import LAMBDA_UNZIPPED_LIMIT, LAMBDA_UNZIPPED_LIMIT_TEXT, LAMBDA_ZIP_LIMIT, LAMBDA_ZIP_LIMIT_TEXT
from ..manifest import ColdStart, LambdaSection, Manifest, PrunedFiles
from ..model.info import Signature, sample_inputs
from ..processing.packages import prune_for_lambda
from ..render.context import RenderContext
from ..sizes import format_size
from ..targets import Target
from ..uv import install_for_platform
from ..steps import StepContext

ZIP = "lambda/function.zip"
APP = "lambda/app"
COLD_START_RUNS = 5  # fresh processes per build; the median is what --max-cold-start checks

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
        platform = m.target.platform
        app, site, staged_app = ctx.root / APP, ctx.work / "lambda-site", ctx.work / "lambda-app"
        write_app(app, RenderContext.from_manifest(m), ctx.model, ctx.root)
        pruned = install_wheels(m.target, m.requirements.runtime, site, no_deps=m.requirements.processing)
        pruned += prune(site, prune_rules(m.target))
        ctx.log("left out: " + ", ".join(f"{p.kind} ({p.files} files, {format_size(p.bytes)})" for p in pruned))
        shutil.copytree(app, staged_app)
        bytecode = compile_bytecode([staged_app, site], platform.python_version, ctx.log)
        unzipped = write_zip(ctx.root / ZIP, staged_app, site)
        size = (ctx.root / ZIP).stat().st_size
        ctx.log(f"function.zip: {format_size(size)} (limit {LAMBDA_ZIP_LIMIT_TEXT}), "
                f"{format_size(unzipped)} unzipped (limit {LAMBDA_UNZIPPED_LIMIT_TEXT})")
        cold = measure_cold_start(ctx, ctx.root / ZIP)
        if cold.seconds is not None:
            ctx.log(f"cold start: {cold.seconds}s (init {cold.init_seconds}s + first invoke "
                    f"{cold.invoke_seconds}s; p90 {cold.p90_seconds}s), peak memory {cold.peak_rss_mb} MB")
        else:
            ctx.log(f"cold start {cold.note}")
        if ctx.options.max_cold_start is not None:
            enforce_cold_start(cold, ctx.options.max_cold_start)
        return LambdaSection(
            zip=ZIP, cold_start=cold, unzipped_bytes=unzipped, bytecode=bytecode,
            pruned=[PrunedFiles(kind=p.kind, files=p.files, bytes=p.bytes) for p in pruned],
            snapstart=ctx.options.snapstart,
        )


def compile_bytecode(folders: list[Path], python_version: str, log) -> str | None:
    """Compile the zip's folders for the function's Python; what was made, or None."""
    python = find_python(python_version)  # bytecode depends on the version, not the CPU
    if python is None:
        log(f"no bytecode: no Python {python_version} on this machine (set MLPACK_LAMBDA_PYTHON); "
            "every cold start will compile the modules from source")
        return None
    tags = {compile_folder(folder, python.path, TASK_ROOT).tag for folder in folders}
    return f"{tags.pop()}, {INVALIDATION_MODE}"


def measure_cold_start(ctx: StepContext, zip_path: Path) -> ColdStart:
    platform = ctx.manifest.target.platform
    python = find_python(platform.python_version, platform.arch)
    if python is None:
        return not_measured(f"no Python {platform.python_version} for {platform.arch} on this machine, so not "
                            "measured on the target (MLPACK_LAMBDA_PYTHON may name one, e.g. run by qemu-user)")
    try:
        runtime = install_runtime_client(ctx.work / "lambda-runtime", platform.python_platform,
                                         platform.python_version, python)
    except MlpackError as exc:
        return not_measured(f"awslambdaric could not be installed ({exc.message})")
    m = ctx.manifest
    event = {"inputs": m.processing.sample} if m.processing else sample_event(m.model.signature)
    return measure_zip(zip_path, python, runtime, event, ctx.work / "cold-start", COLD_START_RUNS, ctx.log)


def enforce_cold_start(cold: ColdStart, budget: float) -> None:
    if cold.seconds is None:
        raise MlpackError(f"--max-cold-start {budget}s cannot be checked: {cold.note}")
    if cold.emulated:
        raise MlpackError(f"--max-cold-start {budget}s cannot be checked: the cold start ({cold.seconds:.3f}s) "
                          "was measured under emulation, not on the target's CPU",
                          "check the budget on a machine of the target's architecture")
    if cold.seconds > budget:
        raise MlpackError(
            f"cold start {cold.seconds:.3f}s exceeds --max-cold-start {budget}s",
            "choose a smaller variant or raise the budget",
        )


def install_wheels(target: Target, packages: list[str], dest: Path, no_deps: Sequence[str] = ()) -> list[Pruned]:
    """Install the target platform's wheels into dest, without running anything built;
    `no_deps` without their dependencies (the processing's, which only download need), and
    without the parts of theirs that the processing never loads (what was left out)."""
    install_for_platform(
        dest, python_platform=target.platform.python_platform, python_version=target.platform.python_version,
        packages=packages, what="fetching the Lambda zip's wheels",
    )
    if no_deps:
        install_for_platform(
            dest, python_platform=target.platform.python_platform, python_version=target.platform.python_version,
            packages=no_deps, no_deps=True, what="fetching the processing's wheels",
        )
        before = _tree_size(dest)
        removed = prune_for_lambda(dest, list(no_deps))
        if removed:
            return [Pruned("processing's unused extensions", len(removed), before - _tree_size(dest))]
    return []


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_zip(zip_path: Path, *folders: Path) -> int:
    """Zip the folders' contents side by side at the zip's root, reproducibly: entries in
    name order, each with the same time, mode and compression. Returns the unzipped size."""
    entries: dict[str, Path] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                entries[path.relative_to(folder).as_posix()] = path
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, wherever the build runs: the mode below is read as such
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
    return unzipped


def sample_event(signature: Signature) -> dict:
    """A direct-invoke event the model accepts: zeros (empty strings), with free axes of size 1."""
    return {"inputs": sample_inputs(signature)}
