"""`mlpack image` and `mlpack push`: registered on the main app through cli.command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import command

BuilderOption = Annotated[
    Optional[str],
    typer.Option("--builder", help="docker (a reachable Docker daemon) or buildah (daemonless); default: detect."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


@command("image")
def image_cmd(
    artifact: Annotated[Path, typer.Argument(help="An artifact folder written by `mlpack build`.", show_default=False)],
    builder: BuilderOption = None,
    base_image: Annotated[
        Optional[str],
        typer.Option("--base-image", help="Build on this base instead of the target's public one (e.g. a mirror)."),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Build the artifact's OCI image from its container context and record its id in manifest.json."""
    from .image.build import build_image
    from .image.builder import select_builder
    from .progress import Progress

    built = build_image(artifact, select_builder(builder), base_image, Progress(quiet=quiet))
    typer.echo(f"{built.ref}  {built.platform}  {built.id}")


@command("push")
def push_cmd(
    artifacts: Annotated[
        list[Path],
        typer.Argument(help="Artifact folder(s) with built images; amd64 + arm64 of one model make a multi-arch index.",
                       show_default=False),
    ],
    to: Annotated[str, typer.Option("--to", help="REGISTRY/REPOSITORY[:TAG]; the tag defaults to the image's.")] = ...,
    builder: BuilderOption = None,
    quiet: QuietOption = False,
) -> None:
    """Push built images, check the registry holds exactly them, and record image@sha256 in manifest.json."""
    from .image.builder import select_builder
    from .image.push import push_artifacts
    from .progress import Progress

    result = push_artifacts(artifacts, to, select_builder(builder), Progress(quiet=quiet))
    for item in result.images:
        typer.echo(f"{item.artifact.name}  {item.platform}  {result.dest.at(item.digest)}")
    if result.index_digest:
        typer.echo(f"index  {', '.join(p.platform for p in result.images)}  {result.pinned}")
