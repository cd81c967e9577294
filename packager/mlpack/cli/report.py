"""`mlpack report ARTIFACT [--open]`: where an artifact's report.html is, and open it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
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
    open_: Annotated[bool, typer.Option(
        "--open", help="Open the report in the web browser; where none can start (a server without a desktop), "
                       "print how to serve the page to one.")] = False,
) -> None:
    """Print the path of the artifact's report.html: candidates, the size/latency chart with
    the gate's verdicts, the pick and why. The page is self-contained (no network)."""
    import webbrowser

    path = report_file(artifact)
    app.echo(str(path))
    if open_ and not webbrowser.open(path.as_uri()):
        # Not a failure: the report is there, and this is how to see it from a machine with a browser.
        for line in serve_instructions(path):
            app.note(line)


SERVE_PORT = 8000  # http.server's own default


def serve_instructions(page: Path) -> list[str]:
    """How to look at `page` from a browser elsewhere: serve its folder on this machine's
    loopback (the artifact is not published to the network) and tunnel to it."""
    import shlex

    return [
        "note: no web browser could be started here; serve the page and open it from a browser:",
        f"  python3 -m http.server {SERVE_PORT} --bind 127.0.0.1 --directory {shlex.quote(str(page.parent))}",
        f"  then open http://127.0.0.1:{SERVE_PORT}/{page.name} (from another machine, first: "
        f"ssh -L {SERVE_PORT}:127.0.0.1:{SERVE_PORT} THIS-HOST)",
    ]


def register(cli: typer.Typer) -> None:
    cli.command("report")(command(report))
