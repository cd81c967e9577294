"""The `mlpack` command line. Every command goes through one error wrapper: a problem
the user can fix is one line on stderr and a non-zero exit; anything else keeps its
traceback behind --debug."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from . import __version__
from .errors import InputError, MlpackError

app = typer.Typer(
    name="mlpack",
    help="Turn a trained ONNX model into a deployable, size-optimized artifact per hardware target.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs wrap as prose
)
_state = {"debug": False}


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def command(name: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    """Register a command wrapped in mlpack's error handling."""

    def register(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapped(*args: Any, **kw: Any) -> Any:
            try:
                return func(*args, **kw)
            except MlpackError as exc:
                if _state["debug"]:
                    raise
                fail(exc.one_line(), exc.exit_code)
            except KeyboardInterrupt:
                fail("interrupted; nothing was left half-written", 130)
            except (typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                if _state["debug"]:
                    raise
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                fail(f"unexpected {type(exc).__name__}: {detail}; rerun with --debug for the traceback")

        return app.command(name, **kwargs)(wrapped)

    return register


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlpack {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    _state["debug"] = debug


@command("targets")
def targets_cmd() -> None:
    """List the hardware targets mlpack builds for."""
    from .targets import known_targets

    found = known_targets()
    width = max(len(t.name) for t in found)
    for target in found:
        typer.echo(f"{target.name:<{width}}  {target.platform.oci:<11}  {target.description}")


@command("inspect")
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="Path to an ONNX model.", show_default=False)],
) -> None:
    """Check a model and print its signature: inputs, outputs, dtypes, shapes."""
    from .model_info import inspect_model

    info = inspect_model(model)
    typer.echo(f"{info.path.name}: opset {info.opset}, {info.size_bytes:,} bytes, {info.producer or 'unknown producer'}")
    for kind, specs in (("input ", info.signature.inputs), ("output", info.signature.outputs)):
        for spec in specs:
            typer.echo(f"  {kind}  {spec.name}: {spec.dtype} {spec.shape_text()}")


@command("build")
def build_cmd(
    model: Annotated[
        Optional[Path],
        typer.Argument(help="ONNX model to package. Omit it to build the embedded demo model.", show_default=False),
    ] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Hardware target; see `mlpack targets`.")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write <name>-<target>/ into.")] = Path("."),
    name: Annotated[Optional[str], typer.Option(help="Artifact name (default: the model file's name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing artifact folder.")] = False,
    calibration: Annotated[
        Optional[Path],
        typer.Option(help=".npz of inputs by name (and optional `labels`) for calibration and the accuracy gate."),
    ] = None,
    max_cold_start: Annotated[
        Optional[float],
        typer.Option(help="aws-lambda: fail the build if the measured cold start exceeds this many seconds."),
    ] = None,
    gate: Annotated[
        Optional[list[str]],
        typer.Option(
            "--gate",
            metavar="KEY=VALUE",
            help="Change an accuracy-gate threshold, e.g. --gate min_cosine_mean=0.98 (repeatable; "
            "keys and strict defaults: `mlpack optimize --help`, docs/optimization.md).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    image: Annotated[bool, typer.Option("--image", help="Also build the container image (see `mlpack image`).")] = False,
    base_image: Annotated[
        Optional[str], typer.Option("--base-image", help="With --image: build on this base (e.g. a mirror).")
    ] = None,
) -> None:
    """Build a deployable artifact for one target: optimized model, Bento or Lambda
    package, container context, telemetry agent files and infrastructure code."""
    from .build import BuildRequest, build
    from .progress import Progress
    from .summary import build_summary

    overrides = {}
    for item in gate or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--gate {item!r} is not KEY=VALUE", "e.g. --gate min_cosine_mean=0.98")
        overrides[key.strip()] = value.strip()
    result = build(
        BuildRequest(model=model, target=target, out=out, name=name, force=force,
                     calibration=calibration, max_cold_start=max_cold_start, gate=overrides),
        Progress(quiet=quiet),
    )
    typer.echo(build_summary(result))
    if image:
        from .image.build import build_image

        built = build_image(result.path, base_image=base_image, progress=Progress(quiet=quiet))
        typer.echo(f"  image      {built.ref}  {built.platform}  {built.id}")


@command("verify")
def verify_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact folder written by `mlpack build`.", show_default=False)],
) -> None:
    """Check that an artifact's files match the sha256 sums in its manifest.json."""
    from .manifest import read_manifest, verify_files

    manifest = read_manifest(artifact)
    problems = verify_files(artifact, manifest)
    if problems:
        raise MlpackError(
            f"{artifact.name} does not match manifest.json: {', '.join(problems[:5])}"
            + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""),
            "rebuild the artifact; never edit it by hand",
        )
    typer.echo(f"{artifact.name}: {len(manifest['files'])} files match manifest.json")


from . import cli_deploy  # noqa: E402,F401  (registers `mlpack deploy`)
from . import cli_optimize  # noqa: E402,F401  (registers `mlpack optimize`)
from . import cli_iac  # noqa: E402,F401  (registers `mlpack iac`)
from . import cli_image  # noqa: E402,F401  (registers `mlpack image` and `mlpack push`)
from . import cli_rollout  # noqa: E402,F401  (registers `mlpack rollout`)


def main() -> None:
    app(prog_name="mlpack")


if __name__ == "__main__":
    sys.exit(main())
