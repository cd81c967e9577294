"""`mlpack verify`: the artifact's files against the sha256 sums in its manifest."""

from __future__ import annotations

import typer

from ..errors import MlpackError
from .application import Application, command
from .options import ArtifactArgument


def verify(app: Application, artifact: ArtifactArgument) -> None:
    """Check that an artifact's files match the sha256 sums in its manifest.json."""
    from ..artifact import Artifact

    opened = Artifact.open(artifact)
    problems = opened.problems()
    if problems:
        raise MlpackError(
            f"{opened.name} does not match manifest.json: {', '.join(problems[:5])}"
            + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""),
            "rebuild the artifact; never edit it by hand",
        )
    app.echo(f"{opened.name}: {len(opened.manifest.files)} files match manifest.json")


def register(cli: typer.Typer) -> None:
    cli.command("verify")(command(verify))
