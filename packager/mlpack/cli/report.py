"""`mlpack report ARTIFACT [--open]`: where an artifact's report.html is, and open it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError, MlpackError
from .application import Application, command


def report_file(folder: Path) -> Path:
    """The report.html of an artifact (`mlpack build`) or of an `mlpack optimize` folder."""
    from ..artifact import REBUILD, Artifact
    from ..manifest import MANIFEST
    from ..optimize.report_html import REPORT_HTML

    folder = folder.expanduser().resolve()
    if (folder / MANIFEST).is_file():
        artifact = Artifact.open(folder)
        if not (folder / REPORT_HTML).is_file():
            raise InputError(f"{artifact.name} has no {REPORT_HTML}: an older mlpack built it", REBUILD)
    elif not (folder / REPORT_HTML).is_file():
        raise InputError(f"{folder} has no {REPORT_HTML}",
                         "pass a folder written by `mlpack build` or `mlpack optimize`")
    return folder / REPORT_HTML


def report(
    app: Application,
    artifact: Annotated[Path, typer.Argument(help="A folder written by `mlpack build` or `mlpack optimize`.",
                                             show_default=False)],
    open_: Annotated[bool, typer.Option("--open", help="Open the report in the web browser.")] = False,
) -> None:
    """Print the path of the artifact's report.html: candidates, the size/latency chart with
    the gate's verdicts, the pick and why. The page is self-contained (no network)."""
    import webbrowser

    path = report_file(artifact)
    app.echo(str(path))
    if open_ and not webbrowser.open(path.as_uri()):
        raise MlpackError("no web browser could be started here", f"open {path} in a browser yourself")


def register(cli: typer.Typer) -> None:
    cli.command("report")(command(report))
