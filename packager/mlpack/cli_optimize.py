"""`mlpack optimize MODEL --target T`: only the optimization step of a build.

Writes the chosen model and the report (report.md, report.json) to the output folder
and prints the candidate table. cli.py imports this module to register the command.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from .cli import command
from .errors import InputError
from .fsutil import staged_folder

_GATE = "Accuracy gate (defaults: docs/optimization.md)"


@command("optimize")
def optimize(
    model: Annotated[Path, typer.Argument(help="The trained model (.onnx).")],
    target: Annotated[str, typer.Option("--target", "-t", help="Target name (see `mlpack targets`).")],
    calibration: Annotated[
        Optional[Path],
        typer.Option("--calibration", help="A .npz with one array per model input (and optional `labels`), "
                                           "used for static calibration and the accuracy gate."),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Output folder (default: ./MODEL-TARGET-optimized).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output folder if it exists.")] = False,
    min_top1_agreement: Annotated[Optional[float], typer.Option(help="Classifiers: share of rows whose top class must match float.", rich_help_panel=_GATE)] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Classifiers with labels: largest accuracy loss (0.005 = 0.5 points).", rich_help_panel=_GATE)] = None,
    min_cosine_mean: Annotated[Optional[float], typer.Option(help="Embeddings: lowest mean cosine similarity to float.", rich_help_panel=_GATE)] = None,
    min_cosine_min: Annotated[Optional[float], typer.Option(help="Embeddings: lowest cosine similarity of any row.", rich_help_panel=_GATE)] = None,
    max_relative_error: Annotated[Optional[float], typer.Option(help="Regression: largest error relative to the output's spread.", rich_help_panel=_GATE)] = None,
    task: Annotated[Optional[str], typer.Option(help="How to read outputs: auto, classification, embedding, regression.", rich_help_panel=_GATE)] = None,
) -> None:
    """Make smaller or faster variants of MODEL for a target, check each against the float
    model on data, and keep the one the target's policy picks."""
    from .model_info import inspect_model
    from .optimize import GateSettings, optimize_model
    from .targets import load_target

    given = {
        "min_top1_agreement": min_top1_agreement, "max_accuracy_drop": max_accuracy_drop,
        "min_cosine_mean": min_cosine_mean, "min_cosine_min": min_cosine_min,
        "max_relative_error": max_relative_error, "task": task,
    }
    try:
        gate = GateSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        item = exc.errors()[0]
        option = "--" + str(item["loc"][0]).replace("_", "-")
        raise InputError(f"{option}: {item['msg']}", "see `mlpack optimize --help` for the ranges") from exc

    spec = load_target(target)
    info = inspect_model(model)
    out = out or Path.cwd() / f"{model.stem}-{spec.name}-optimized"
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"output folder {out} already exists", "pass --force to replace it, or --out DIR")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlpack-optimize-") as tmp, staged_folder(out) as staged:
        result = optimize_model(info, spec, Path(tmp), data_path=calibration, gate=gate,
                                log=lambda line: typer.echo(f"  {line}", err=True))
        shutil.copyfile(result.chosen.path, staged / "model.onnx")
        (staged / "report.md").write_text(result.to_markdown(), encoding="utf-8")
        (staged / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    typer.echo(result.table())
    typer.echo(f"wrote {out / 'model.onnx'} ({result.chosen.name}) and its report")
