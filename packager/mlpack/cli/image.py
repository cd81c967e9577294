"""`mlpack image` and `mlpack push`: build an artifact's OCI image, push it to a registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .application import Application, command
from .options import ArtifactArgument, BuilderOption, JsonOption, QuietOption, VerifyKeyOption


def image(
    app: Application,
    artifact: ArtifactArgument,
    builder: BuilderOption = None,
    base_image: Annotated[
        Optional[str],
        typer.Option("--base-image", help="Build on this base instead of the target's public one (e.g. a mirror)."),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Build the artifact's OCI image from its container context and record its id in manifest.json."""
    from ..artifact import Artifact
    from ..image.build import build_image
    from ..image.builder import select_builder

    built = build_image(Artifact.open(artifact), select_builder(builder), base_image, app.progress(quiet))
    app.echo(f"{built.ref}  {built.platform}  {built.id}")


def push(
    app: Application,
    artifacts: Annotated[
        list[Path],
        typer.Argument(help="Artifact folder(s) with built images; amd64 + arm64 of one model make a multi-arch index.",
                       show_default=False),
    ],
    to: Annotated[str, typer.Option("--to", help="REGISTRY/REPOSITORY[:TAG]; the tag defaults to the image's.")] = ...,
    builder: BuilderOption = None,
    key: VerifyKeyOption = None,
    quiet: QuietOption = False,
    json_summary: JsonOption = False,
) -> None:
    """Push built images, check the registry holds exactly them, and record image@sha256 in manifest.json."""
    from ..artifact import Artifact
    from ..image.builder import select_builder
    from ..image.push import push_artifacts
    from ..image.registry import Reference

    Reference.parse(to, default_tag="latest")  # a bad --to fails before anything else
    opened = [Artifact.open(path) for path in artifacts]
    result = push_artifacts(opened, to, select_builder(builder), app.progress(quiet), key=key)
    if json_summary:
        app.echo_json({
            "images": [{"artifact": item.artifact.name, "platform": item.platform, "digest": item.digest,
                        "ref": result.dest.at(item.digest), "size_bytes": item.size} for item in result.images],
            "index": {"digest": result.index_digest, "ref": result.pinned} if result.index_digest else None,
            "pinned": result.pinned,
        })
        return
    for item in result.images:
        app.echo(f"{item.artifact.name}  {item.platform}  {result.dest.at(item.digest)}")
    if result.index_digest:
        app.echo(f"index  {', '.join(p.platform for p in result.images)}  {result.pinned}")


def register(cli: typer.Typer) -> None:
    cli.command("image")(command(image))
    cli.command("push")(command(push))
