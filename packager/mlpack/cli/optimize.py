"""`mlpack optimize MODEL --target T`: only the optimization step of a build.

Writes the chosen model and the report (report.md, report.json, report.html) to the output folder
and prints the candidate table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from .application import Application, command
from .options import (
    CalibrationOption, GateOption, JsonOption, SampleShapeOption, TokenizerOption, VariantOption, gate_settings,
    sample_shapes,
)


def optimize(
    app: Application,
    model: Annotated[Path, typer.Argument(help="The trained model (.onnx).", show_default=False)],
    target: Annotated[str, typer.Option("--target", "-t", help="Target name (see `mlpack targets`).")],
    calibration: CalibrationOption = None,
    sample_shape: SampleShapeOption = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output folder (default: ./MODEL-TARGET-optimized).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output folder if it exists.")] = False,
    gate: GateOption = None,
    variant: VariantOption = None,
    tokenizer: TokenizerOption = None,
    json_summary: JsonOption = False,
) -> None:
    """Make smaller or faster variants of MODEL for a target, check each against the float
    model on data, and keep the one the target's policy picks. Calibration sentences (.txt)
    are tokenized with the model's tokenizer (--tokenizer, or tokenizer.json beside it)."""
    from ..fsutil import scratch_folder, staged_folder
    from ..model.files import copy_model
    from ..model.info import inspect_model
    from ..optimize import optimize_model
    from ..optimize.data import check_sample_shapes
    from ..optimize.report_html import REPORT_HTML, About, report_files, to_html
    from ..processing import (
        ProcessingRequest, is_sentences, resolve_processing, sentence_calibration, tokenizer_for_sentences,
    )
    from ..targets import load_target

    settings = gate_settings(gate)
    shapes = sample_shapes(sample_shape)
    spec = load_target(target)
    info = inspect_model(model)
    check_sample_shapes(shapes, info.signature, with_data=calibration is not None)
    out = out or Path.cwd() / f"{model.stem}-{spec.name}-optimized"
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"output folder {out} already exists", "pass --force to replace it, or --out DIR")

    sentences = calibration is not None and is_sentences(calibration)
    text = resolve_processing(ProcessingRequest(tokenizer=tokenizer), info, {}) if sentences else None
    if sentences:
        tokenizer_for_sentences(calibration, text)
    out.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder("optimize") as scratch, staged_folder(out) as staged:
        tmp = scratch.path
        if sentences:
            calibration = sentence_calibration(calibration, text, tmp / "calibration")
        progress = app.progress()
        result = optimize_model(info, spec, tmp, data_path=calibration, gate=settings, variant=variant,
                                log=lambda line: progress.info(f"  {line}"), progress=progress,
                                sample_shapes=shapes)
        copy_model(result.chosen.path, staged / "model.onnx")  # with model.onnx.data for external weights
        (staged / "report.md").write_text(result.to_markdown(), encoding="utf-8")
        (staged / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
        (staged / REPORT_HTML).write_text(to_html(result, About.for_target(model.name, spec)), encoding="utf-8")
    if json_summary:
        app.echo_json({"out": str(out), "model": str(out / "model.onnx"),
                       "report": report_files(out),
                       **result.to_json()})
        return
    app.echo(result.table())
    app.echo(f"wrote {out / 'model.onnx'} ({result.chosen.name}) and its report")


def register(cli: typer.Typer) -> None:
    cli.command("optimize")(command(optimize))
