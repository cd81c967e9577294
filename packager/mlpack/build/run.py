"""`mlpack build`: from an ONNX model to a complete artifact folder for one target.

validate the request -> plan (pure) -> optimize -> draft manifest -> run the steps
(the tools: bentoml, uv, interpreters) -> size memory from what they measured -> render
the target's files from the manifest -> write the manifest last -> move the finished
folder into place. Everything is written to a temporary folder beside the destination,
so a failed build leaves nothing behind and never half-replaces an existing artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from .. import __version__
from ..artifact import Artifact
from ..model.demo import DEMO_NAME, demo_model
from ..monitoring.drift import build_profile, drift_json, drift_markdown, drift_section, sequence_pads, write_profile
from ..errors import InputError
from ..render.facts import short_sha
from ..fsutil import created_folders, staged_folder, sweep
from ..manifest import BuildInputs, ColdStart, ImageSection, Manifest, ModelSection, OptimizationSection, SourceModel
from ..model.files import copy_model, model_bytes
from ..model.info import ModelInfo, inspect_model, sha256_file
from ..optimize import OptimizationResult, optimize_model
from ..optimize.data import check_sample_shapes
from ..optimize.pipeline import check_variant, runtime_fit
from ..pinned_runtime import for_target
from ..optimize.report_html import REPORT_HTML, About, to_html
from ..progress import Progress
from ..render.context import RenderContext
from ..render.templates import render_artifact, write_files
from ..trust.reproducible import build_inputs
from ..steps import StepContext, StepOptions, StepTiming, run_steps
from ..processing import (
    ResolvedProcessing, is_sentences, resolve_processing, sentence_calibration, ship_processing, tokenizer_for_sentences,
)
from ..processing.describe import processing_markdown
from ..targets import Target, load_target
from .plan import MODEL_FILE, BuildPlan, host_versions, memory_mb, plan_build
from .request import BuildRequest, check_name, check_snapstart, default_name


@dataclass
class BuildResult:
    path: Path
    manifest: Manifest
    optimization: OptimizationResult
    plan: BuildPlan
    timings: list[StepTiming] = field(default_factory=list)
    cold_start: ColdStart | None = None  # measured by the lambda-zip step; in report.json, not the manifest


def build(request: BuildRequest, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    target = request.resolve_target(load_target(request.target))
    if request.calibration is not None and not request.calibration.is_file():
        raise InputError(f"calibration file {request.calibration} does not exist",
                         "pass an existing .npz file (or .txt of sentences, for a model with a tokenizer)")
    if request.name is not None:
        check_name(request.name)
    if request.snapstart:
        check_snapstart(target)
    if request.variant is not None:
        check_variant(target, request.variant)
    out = request.out.expanduser().resolve()
    if request.model is not None:
        # Fail on a bad model before anything is written: also one the target's runtime cannot read.
        info_first = inspect_model(request.model)
        runtime_fit(onnx.load(str(request.model), load_external_data=False), target)
    model_path, data_path, fallback_name = _resolve_model(request, progress)
    name = request.name or fallback_name
    info = info_first if request.model is not None else inspect_model(model_path)
    check_sample_shapes(request.sample_shapes, info.signature, with_data=data_path is not None)
    processing = _resolve_processing(request, info, target)
    check_cuda_version(target)
    plan = plan_build(name, target, host_versions(target), processing, info.operators, calibrated=data_path is not None)
    dest = out / plan.artifact
    with created_folders(out):  # a failed build leaves no empty --out behind
        _prepare_out(out, dest, request.force, progress)
        swept = sweep(out) + sweep(Path(tempfile.gettempdir()))
        if swept:
            progress.info(f"Removed what killed mlpack processes left: {', '.join(swept)}")
        inputs = build_inputs(
            source_model_sha256=info.sha256, calibration_sha256=sha256_file(data_path) if data_path else None,
            target=target, versions=plan.versions, options={"name": name, "gate": request.gate.model_dump(),
                                                                  "variant": request.variant,
                                                                  "sample_shapes": request.sample_shapes or None},
            mlpack_version=__version__,
        )
        progress.info(f"Building {dest.name} from {model_path.name} for {target.name} ({target.platform.oci})")

        with staged_folder(dest) as root:
            manifest, optimization, timings, cold = _build_into(root, plan, name, info, data_path, request,
                                                                progress, inputs, processing)
    return BuildResult(path=dest, manifest=manifest, optimization=optimization, plan=plan, timings=timings,
                       cold_start=cold)


def _build_into(
    root: Path, plan: BuildPlan, name: str, info: ModelInfo, data_path: Path | None,
    request: BuildRequest, progress: Progress, inputs: BuildInputs | None = None,
    processing: ResolvedProcessing | None = None,
) -> tuple[Manifest, OptimizationResult, list[StepTiming], ColdStart | None]:
    target = plan.target
    work = root / ".work"
    log = lambda line: progress.info(f"  {line}")  # noqa: E731
    if data_path is not None and is_sentences(data_path):
        data_path = sentence_calibration(data_path, processing, work / "calibration")
        log(f"calibration: the sentences of {request.calibration.name}, tokenized as the service does")
    with progress.step(f"Optimizing for {target.name} (passes: {', '.join(target.optimize.passes) or 'none'})"):
        optimization = optimize_model(info, target, work / "optimize", data_path=data_path, gate=request.gate, log=log, variant=request.variant,
                                      progress=progress, sample_shapes=request.sample_shapes)
    shipped = root / MODEL_FILE
    shipped.parent.mkdir()
    copy_model(optimization.chosen.path, shipped)  # with model.onnx.data when the weights are external

    draft = draft_manifest(plan, name, info, optimization, sha256_file(shipped), model_bytes(shipped),
                           onnx.load(str(shipped), load_external_data=False).ir_version)
    if processing is not None:  # the sample through the processing and the shipped variant
        draft.processing = ship_processing(processing, root, shipped, info.signature,
                                           target.runtime.session_settings())
    with progress.step("Profiling the calibration data for drift"):
        profile, drift_note = build_profile(shipped, info.signature, target, data_path, optimization.synthetic,
                                            optimization.data_source, sequence_pads(processing))
        log(drift_note)
    if profile is not None:
        write_profile(root, profile)
        draft.drift = drift_section(profile)
    draft.build = inputs
    context = StepContext(root=root, work=work, manifest=draft, model=shipped,
                          options=StepOptions(max_cold_start=request.max_cold_start, snapstart=request.snapstart),
                          log=log, gate=gate_verdict(optimization))
    results, timings = run_steps([s.name for s in plan.steps], context, progress)
    cold = getattr(results.get("lambda_"), "cold_start", None)
    manifest, measured = finish_manifest(draft, results), measurements(results)

    with progress.step("Rendering container context, telemetry and infrastructure files"):
        write_files(root, render_artifact(RenderContext.from_manifest(manifest, profile), plan.render))
    write_files(root, {
        "report.md": optimization.to_markdown() + processing_markdown(manifest) + drift_markdown(profile, drift_note)
                     + _lambda_report(root, manifest, cold),
        "report.json": _json({**optimization.to_json(), **measured, "build_steps": [asdict(t) for t in timings],
                              "drift": drift_json(profile, drift_note)}),
        REPORT_HTML: report_html(root, manifest, optimization, cold, drift_note),
    })
    shutil.rmtree(work)
    return Artifact.create(root, manifest).manifest, optimization, timings, cold


def report_html(root: Path, manifest: Manifest, optimization: OptimizationResult, cold: ColdStart | None,
                drift_note: str = "") -> str:
    """The optimization report as a page, with what the steps measured (the Lambda cold start)."""
    zip_file = root / manifest.lambda_.zip if manifest.lambda_ is not None else None
    about = About.from_manifest(manifest, zip_file.stat().st_size if zip_file and zip_file.is_file() else None, cold,
                                drift_note)
    return to_html(optimization, about)


def draft_manifest(plan: BuildPlan, name: str, info: ModelInfo, optimization: OptimizationResult,
                   model_sha256: str, model_bytes: int, ir_version: int | None = None) -> Manifest:
    """The manifest as far as it is known before the steps run: everything but their sections."""
    return Manifest(
        name=name,
        target=plan.target,
        model=ModelSection(
            file=MODEL_FILE, sha256=model_sha256, size_bytes=model_bytes, variant=optimization.chosen.name,
            source=SourceModel(name=info.path.name, sha256=info.sha256, size_bytes=info.size_bytes,
                               opset=info.opset, producer=info.producer),
            signature=info.signature, ir_version=ir_version, rewrites=optimization.rewrites,
            operators=info.operators,
        ),
        optimization=OptimizationSection(chosen=optimization.chosen.name, why=reason_without_figures(optimization),
                                         data_source=optimization.data_source,
                                         gated_with=optimization.gated_with or None),
        image=ImageSection(repository=f"mlpack/{plan.artifact}", tag=f"{__version__}-{short_sha(model_sha256)}"),
        memory_mb=memory_mb(model_bytes),
        requirements=plan.requirements,
        versions=plan.versions,
    )


def finish_manifest(draft: Manifest, results: dict[str, Any]) -> Manifest:
    """The steps' sections added, and memory sized again from a measured peak, if any.

    Timings stay out of the manifest (they go to report.json, see `measurements`), so the
    same inputs give the same manifest; memory is sized in 64 MB steps from the peak.
    """
    manifest = draft.model_copy(update=results)
    if manifest.lambda_ is not None and manifest.lambda_.cold_start is not None:
        cold = manifest.lambda_.cold_start
        if cold.peak_rss_mb is not None:
            manifest.memory_mb = memory_mb(manifest.model.size_bytes, cold.peak_rss_mb)
        manifest.lambda_ = manifest.lambda_.model_copy(update={"cold_start": None})
    return manifest


def check_cuda_version(target: Target) -> None:
    """A GPU target's CUDA wheels must be of the CUDA release its onnxruntime-gpu was built for."""
    if target.cuda is None:
        return
    built_for = for_target(target).cuda_version
    if built_for.split(".")[0] != target.cuda.version.split(".")[0]:
        raise InputError(f"target {target.name} ships CUDA {target.cuda.version} wheels, but {for_target(target)} is "
                         f"built for CUDA {built_for or 'nothing (no CUDA provider)'}",
                         f"set [cuda] in targets/{target.name}.toml to CUDA {built_for} wheels, or pin an "
                         f"onnxruntime-gpu built for CUDA {target.cuda.version}")


def _resolve_processing(request: BuildRequest, info: ModelInfo, target: Target) -> ResolvedProcessing | None:
    """The processing asked for (or a tokenizer beside the model), checked on the source model;
    sentences for calibration need a tokenizer. All before anything is written."""
    processing = resolve_processing(request.processing, info, target.runtime.session_settings())
    if request.calibration is not None and is_sentences(request.calibration):
        tokenizer_for_sentences(request.calibration, processing)
    return processing


def measurements(results: dict[str, Any]) -> dict[str, Any]:
    """What the steps measured, for report.json: the Lambda cold start."""
    section = results.get("lambda_")
    cold = getattr(section, "cold_start", None)
    return {"cold_start": cold.model_dump()} if cold is not None else {}


def gate_verdict(optimization: OptimizationResult) -> dict[str, Any]:
    """The accuracy gate's verdict on the shipped model, for the SBOM's model card."""
    chosen = optimization.chosen
    return {"passed": chosen.passed, "reason": chosen.reason, "metrics": dict(chosen.metrics),
            "data_source": optimization.data_source}


def reason_without_figures(optimization: OptimizationResult) -> str:
    """The manifest's reason for the pick: the rule and the gate's verdicts, no timings (report.md has them),
    and the optimizer's headline (int8 held back on synthetic inputs, nothing made, and why)."""
    if optimization.problem:
        return f"{optimization.chosen.name} ships; {optimization.headline}"
    passed = [c.name for c in optimization.candidates if c.passed and not c.reference and not c.held]
    failed = [c.name for c in optimization.candidates if not c.passed and not c.reference]
    text = f"{optimization.chosen.name} ships; passed the accuracy gate: {', '.join(passed) or 'none'}"
    if failed:
        text += f"; failed it: {', '.join(failed)}"
    if optimization.headline:
        text += f"; {optimization.headline}"
    return text + "; report.md says why, with the measurements"


def _lambda_report(root: Path, manifest: Manifest, cold: ColdStart | None) -> str:
    if manifest.lambda_ is None:
        return ""
    from ..awslambda.report import lambda_markdown

    return lambda_markdown(manifest, (root / manifest.lambda_.zip).stat().st_size, cold)


def _prepare_out(out: Path, dest: Path, force: bool, progress: Progress) -> None:
    fix = "choose a writable folder with --out"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out}: {exc.strerror or exc}", fix) from exc
    if not out.is_dir():
        raise InputError(f"output path {out} is not a folder", fix)
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable", fix)
    if dest.is_symlink():
        # Replaced as a link, never followed: --force must not delete a folder elsewhere.
        target, missing = os.readlink(dest), not dest.exists()
        if not force:
            raise InputError(f"{dest} is a link to {target}" + (", which does not exist" if missing else ""),
                             "pass --force to replace the link with the new artifact (what it points to is kept), "
                             "or choose another --out or --name")
        progress.info(f"--force: {dest.name} is a link to {target}, which does not exist: the new artifact "
                      "replaces the link" if missing else f"--force: {dest.name} is a link to {target}: the new "
                      f"artifact replaces the link; {target} is kept as it is")
    elif dest.exists() and not force:
        raise InputError(f"{dest} already exists", "pass --force to replace it, or choose another --out or --name")


def _resolve_model(request: BuildRequest, progress: Progress) -> tuple[Path, Path | None, str]:
    if request.model is not None:
        return request.model, request.calibration, default_name(request.model)
    with progress.step("Preparing the embedded demo model (scikit-learn digits classifier)"):
        model, validation = demo_model()
    return model, request.calibration or validation, DEMO_NAME


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
