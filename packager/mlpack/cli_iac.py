"""`mlpack iac ARTIFACT`: regenerate an artifact's infrastructure code from its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import command


@command("iac")
def iac_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact folder written by `mlpack build`.", show_default=False)],
) -> None:
    """Render the artifact's iac/ folder again from manifest.json (e.g. after `mlpack push`
    recorded the image digest, so deployments pin the image by digest)."""
    from .iac import regenerate_iac
    from .manifest import read_manifest

    written = regenerate_iac(artifact)
    image = read_manifest(artifact)["image"]
    pinned = f"{image['repository']}@{image['digest']}" if image.get("digest") else f"{image['repository']}:{image['tag']}"
    typer.echo(f"{artifact.name}: wrote {len(written)} files under iac/ for image {pinned}")
    kinds = sorted({path.split("/")[1] for path in written})
    typer.echo(f"  {', '.join(kinds)}")
