"""`mlpack targets` and `mlpack inspect`: what mlpack builds for, and what a model looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .application import Application, command


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
) -> None:
    """Check a model and print its signature: inputs, outputs, dtypes, shapes."""
    from ..model_info import inspect_model

    info = inspect_model(model)
    app.echo(f"{info.path.name}: opset {info.opset}, {info.size_bytes:,} bytes, {info.producer or 'unknown producer'}")
    for kind, specs in (("input ", info.signature.inputs), ("output", info.signature.outputs)):
        for spec in specs:
            app.echo(f"  {kind}  {spec.name}: {spec.dtype} {spec.shape_text()}")


def register(cli: typer.Typer) -> None:
    cli.command("targets")(command(targets))
    cli.command("inspect")(command(inspect))
