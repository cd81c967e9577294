"""`mlpack iac ARTIFACT`: regenerate an artifact's infrastructure code from its manifest."""

from __future__ import annotations

import typer

from .application import Application, command
from .options import ArtifactArgument


def iac(app: Application, artifact: ArtifactArgument) -> None:
    """Render the artifact's iac/ folder again from manifest.json (e.g. after `mlpack push`
    recorded the image digest, so deployments pin the image by digest). It renders for
    the target the artifact was built for, as recorded in its manifest."""
    from ..artifact import Artifact
    from ..render.iac import regenerate_iac

    opened = Artifact.open(artifact)
    written = regenerate_iac(opened)
    app.echo(f"{opened.name}: wrote {len(written)} files under iac/ for image {opened.manifest.image.pinned}")
    kinds = sorted({path.split("/")[1] for path in written})
    app.echo(f"  {', '.join(kinds)}")
    note = opened.resign_note()
    if note:
        app.echo(f"  {note}")


def register(cli: typer.Typer) -> None:
    cli.command("iac")(command(iac))
