"""`mlpack build`: from an ONNX model to a complete artifact folder for one target.

The flow (see docs/architecture.md): validate the request -> inspect the model ->
optimize -> render the pure parts -> run the build tools (bentoml, uv) -> manifest ->
move the finished folder into place. Everything is written to a temporary folder beside
the destination, so a failed build leaves nothing behind and never half-replaces an
existing artifact.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import __version__
from .app import write_app
from .bento import build_bento
from .demo import DEMO_NAME, demo_model
from .errors import InputError, MlpackError
from .fsutil import staged_folder
from .limits import LAMBDA_ZIP_LIMIT_TEXT
from .sizes import format_size
from .lambda_package import ColdStart, install_wheels, measure_cold_start, sample_event, write_zip
from .manifest import file_entries, write_manifest
from .model_info import ModelInfo, inspect_model, sha256_file
from .optimize import GateSettings, OptimizationResult, optimize_model
from .progress import Progress
from .render import ImageRef, ModelFacts, RenderContext, render_artifact, write_files
from .targets import Target, load_target

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
NAME_RULE = "1 to 40 lowercase letters, digits and '-', starting and ending with a letter or digit"


class BuildRequest(BaseModel):
    model: Path | None = None  # None builds the embedded demo
    target: str
    out: Path = Path(".")
    name: str | None = None
    force: bool = False
    calibration: Path | None = None
    max_cold_start: float | None = None
    gate: dict[str, str] = {}  # accuracy-gate overrides, GateSettings field -> value


@dataclass
class BuildResult:
    path: Path
    manifest: dict[str, Any]
    optimization: OptimizationResult


def default_name(model: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", model.stem.lower()).strip("-")[:40].strip("-")
    return name or "model"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InputError(f"invalid --name {name!r}: use {NAME_RULE}", "pass a plain name, e.g. --name my-model")
    return name


def host_versions(target: Target) -> dict[str, str]:
    """The versions the model was measured with; images and zips pin the same ones, except
    where the target pins its own onnxruntime release (onnxruntime-gpu trails the CPU one)."""
    return {
        "onnxruntime": target.runtime.version or metadata.version("onnxruntime"),
        "numpy": metadata.version("numpy"),
        "bentoml": metadata.version("bentoml"),
        "onnx": metadata.version("onnx"),
        "python": target.platform.python_version,
    }


def memory_mb(model_bytes: int, peak_rss_mb: float | None = None) -> int:
    """Memory to ask for: room for the model and onnxruntime's working set, in 64 MB steps."""
    need = max(3 * model_bytes / 2**20 + 256, 1.5 * (peak_rss_mb or 0), 512)
    return int(math.ceil(need / 64) * 64)


def gate_settings(overrides: dict[str, str]) -> GateSettings:
    """The accuracy gate: strict defaults, with the user's `--gate KEY=VALUE` overrides."""
    try:
        return GateSettings(**overrides)
    except ValidationError as exc:
        item = exc.errors()[0]
        key = ".".join(str(p) for p in item["loc"])
        known = ", ".join(GateSettings.model_fields)
        raise InputError(f"--gate {key}: {item['msg']}", f"gate keys are {known}") from exc


def _prepare_out(out: Path, dest: Path, force: bool) -> None:
    fix = "choose a writable folder with --out"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out}: {exc.strerror or exc}", fix) from exc
    if not out.is_dir():
        raise InputError(f"output path {out} is not a folder", fix)
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable", fix)
    if dest.exists() and not force:
        raise InputError(f"{dest} already exists", "pass --force to replace it, or choose another --out or --name")


def _resolve_model(request: BuildRequest, progress: Progress) -> tuple[Path, Path | None, str]:
    if request.model is not None:
        return request.model, request.calibration, default_name(request.model)
    with progress.step("Preparing the embedded demo model (scikit-learn digits classifier)"):
        model, validation = demo_model()
    return model, request.calibration or validation, DEMO_NAME


def build(request: BuildRequest, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    target = load_target(request.target)
    if request.calibration is not None and not request.calibration.is_file():
        raise InputError(f"calibration file {request.calibration} does not exist", "pass an existing .npz file")
    if request.name is not None:
        check_name(request.name)
    gate = gate_settings(request.gate)
    out = request.out.expanduser().resolve()
    if request.model is not None:
        # Fail on a bad model before anything is written.
        info_first = inspect_model(request.model)
    model_path, data_path, fallback_name = _resolve_model(request, progress)
    name = request.name or fallback_name
    dest = out / f"{name}-{target.name}"
    _prepare_out(out, dest, request.force)
    info = info_first if request.model is not None else inspect_model(model_path)
    progress.info(f"Building {dest.name} from {model_path.name} for {target.name} ({target.platform.oci})")

    with staged_folder(dest) as tmp:
        result = _build_into(tmp, name, target, info, data_path, gate, request, progress)
    return BuildResult(path=dest, manifest=result[0], optimization=result[1])


def _build_into(
    root: Path, name: str, target: Target, info: ModelInfo, data_path: Path | None,
    gate: GateSettings, request: BuildRequest, progress: Progress,
) -> tuple[dict[str, Any], OptimizationResult]:
    work = root / ".work"
    with progress.step(f"Optimizing for {target.name} (passes: {', '.join(target.optimize.passes) or 'none'})"):
        optimization = optimize_model(
            info, target, work / "optimize", data_path=data_path, gate=gate,
            log=lambda line: progress.info(f"  {line}"),
        )
    chosen = optimization.chosen
    (root / "model").mkdir()
    shipped = root / "model" / "model.onnx"
    shutil.copyfile(chosen.path, shipped)
    write_files(root, {
        "report.md": optimization.to_markdown(),
        "report.json": _json(optimization.to_json()),
    })
    versions = host_versions(target)
    runtime_packages = [f"{target.runtime.onnxruntime}=={versions['onnxruntime']}", f"numpy=={versions['numpy']}"]
    shipped_sha = sha256_file(shipped)
    ctx = RenderContext(
        name=name,
        target=target,
        model=ModelFacts(
            sha256=shipped_sha, source_sha256=info.sha256, size_bytes=shipped.stat().st_size,
            variant=chosen.name, signature=info.signature,
        ),
        image=ImageRef(repository=f"mlpack/{name}-{target.name}", tag=f"{__version__}-{shipped_sha[:12]}"),
        versions=versions,
        memory_mb=memory_mb(shipped.stat().st_size),
    )
    extra: dict[str, Any] = {}
    if "bento" in target.builds:
        with progress.step("Building the Bento (BentoML, offline)"):
            write_app(work / "bento-src", "bento", ctx, shipped)
            extra["bento"] = {"tag": build_bento(
                work / "bento-src",
                name=ctx.artifact, version=ctx.image.tag,
                packages=runtime_packages,
                python_version=target.platform.python_version,
                labels={"mlpack.target": target.name, "mlpack.model_sha256": shipped_sha},
                dest=root / "bento",
            ), "path": "bento"}
    if "lambda-zip" in target.builds:
        cold = _build_lambda(root, work, ctx, shipped, runtime_packages, progress)
        if request.max_cold_start is not None:
            _enforce_cold_start(cold, request.max_cold_start)
        extra["lambda"] = {"zip": "lambda/function.zip", "cold_start": cold.model_dump()}
        ctx = ctx.model_copy(update={"memory_mb": memory_mb(shipped.stat().st_size, cold.peak_rss_mb)})
    with progress.step("Rendering container context, telemetry and infrastructure files"):
        write_files(root, render_artifact(ctx))
    shutil.rmtree(work)
    manifest = _manifest(root, ctx, info, optimization, extra)
    write_manifest(root, manifest)
    return manifest, optimization


def _build_lambda(
    root: Path, work: Path, ctx: RenderContext, model: Path, packages: list[str], progress: Progress
) -> ColdStart:
    target = ctx.target
    app, site = root / "lambda" / "app", work / "lambda-site"
    with progress.step(f"Packaging the Lambda zip (python{target.platform.python_version}, {target.platform.python_platform})"):
        write_app(app, "lambda", ctx, model)
        install_wheels(target, packages, site)
        size = write_zip(root / "lambda" / "function.zip", app, site)
        progress.info(f"  function.zip: {format_size(size)} (limit {LAMBDA_ZIP_LIMIT_TEXT})")
    with progress.step("Measuring the function's cold start (fresh processes)"):
        cold = measure_cold_start(app, site, target.platform.python_version, sample_event(ctx.model.signature))
        progress.info(f"  cold start: {cold.seconds}s, peak memory {cold.peak_rss_mb} MB" if cold.seconds else f"  {cold.note}")
    return cold


def _enforce_cold_start(cold: ColdStart, budget: float) -> None:
    if cold.seconds is None:
        raise MlpackError(f"--max-cold-start {budget}s cannot be checked: {cold.note}")
    if cold.seconds > budget:
        raise MlpackError(
            f"cold start {cold.seconds:.3f}s exceeds --max-cold-start {budget}s",
            "choose a smaller variant or raise the budget",
        )


def _manifest(
    root: Path, ctx: RenderContext, info: ModelInfo, optimization: OptimizationResult, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "mlpack_version": __version__,
        "name": ctx.name,
        "artifact": ctx.artifact,
        "target": ctx.target.name,
        "platform": ctx.target.platform.oci,
        "model": {
            "file": "model/model.onnx",
            "sha256": ctx.model.sha256,
            "size_bytes": ctx.model.size_bytes,
            "variant": ctx.model.variant,
            "source": {"name": info.path.name, "sha256": info.sha256, "size_bytes": info.size_bytes,
                       "opset": info.opset, "producer": info.producer},
            "signature": info.signature.model_dump(),
        },
        "optimization": {"chosen": optimization.chosen.name, "why": optimization.why,
                         "data_source": optimization.data_source},
        "image": {"repository": ctx.image.repository, "tag": ctx.image.tag, "digest": None},
        "memory_mb": ctx.memory_mb,
        **extra,
        "versions": {**ctx.versions, "build_python": platform.python_version()},
        "files": file_entries(root),
    }


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"
