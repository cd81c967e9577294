"""The `mlpack` command line: one module per command group, each adding its commands to
the app with `register(app)`; one application object (`application.py`) carries the
global options, and one wrapper turns errors into one line on stderr."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import build, deploy, iac, image, models, optimize, report, rollout, serve, sign, verify
from .application import Application
from .flags import FlagsWithoutType

app = typer.Typer(
    name="mlpack",
    cls=FlagsWithoutType,  # flags take no value: their help shows none
    help="Turn a trained ONNX model into a deployable, size-optimized artifact per hardware target.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs wrap as prose
)


def _version(value: bool) -> None:
    if value:
        from ..about import version_text

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output from any command.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show mlpack's version and the runtime versions each target ships, and exit.")
    ] = False,
) -> None:
    ctx.obj = Application(debug=debug, quiet=quiet)


for _module in (models, build, optimize, report, verify, serve, sign, image, iac, deploy, rollout):
    _module.register(app)


def main() -> None:
    app(prog_name="mlpack")


__all__ = ["Application", "app", "main"]

if __name__ == "__main__":
    sys.exit(main())
