"""`mlpack targets` and `mlpack inspect`: what mlpack builds for, and what a model looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .application import Application, command
from .options import (
    ImagePreprocessOption, LabelsOption, ProcessingOption, TokenizerOption, TopKOption, processing_request,
)


def targets(app: Application) -> None:
    """List the hardware targets mlpack builds for."""
    from ..targets import known_targets

    found = known_targets()
    width = max(len(t.name) for t in found)
    for target in found:
        app.echo(f"{target.name:<{width}}  {target.platform.oci:<11}  {target.description}")


def inspect(
    app: Application,
    model: Annotated[Path, typer.Argument(help="Path to an ONNX model.", show_default=False)],
    tokenizer: TokenizerOption = None,
    labels: LabelsOption = None,
    top_k: TopKOption = 5,
    image_preprocess: ImagePreprocessOption = None,
    processing: ProcessingOption = None,
) -> None:
    """Check a model and print its signature: inputs, outputs, dtypes, shapes; with processing
    (given, or a tokenizer.json beside the model), what a build would serve."""
    from ..model_info import inspect_model

    info = inspect_model(model)
    app.echo(f"{info.path.name}: opset {info.opset}, {info.size_bytes:,} bytes, {info.producer or 'unknown producer'}")
    for kind, specs in (("input ", info.signature.inputs), ("output", info.signature.outputs)):
        for spec in specs:
            app.echo(f"  {kind}  {spec.name}: {spec.dtype} {spec.shape_text()}")
    _inspect_processing(app, info, processing_request(tokenizer, labels, top_k, image_preprocess, processing))


def _inspect_processing(app: Application, info, request) -> None:
    """The processing a build would bundle, checked on the model, and the signature it serves."""
    from ..processing import resolve_processing
    from ..processing.describe import section_lines, signature_lines

    resolved = resolve_processing(request, info, {})
    if resolved is None:
        return
    app.echo("processing")
    for line in section_lines(resolved.section):
        app.echo(f"  {line}")
    app.echo("served (after processing)")
    for line in signature_lines(resolved.section.signature):
        app.echo(f"  {line}")


def register(cli: typer.Typer) -> None:
    cli.command("targets")(command(targets))
    cli.command("inspect")(command(inspect))
