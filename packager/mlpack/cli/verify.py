"""`mlpack verify`: the artifact's files against the sha256 sums in its manifest, and its signature."""

from __future__ import annotations

import typer

from ..errors import MlpackError
from .application import Application, command
from .options import ArtifactArgument, VerifyKeyOption


def verify(app: Application, artifact: ArtifactArgument, key: VerifyKeyOption = None) -> None:
    """Check that an artifact's files match the sha256 sums in its manifest.json and, with
    --key (or $MLPACK_VERIFY_KEY), that its signature.sig verifies with that key."""
    from ..artifact import Artifact
    from ..trust.signing import UNSIGNED, VERIFY_KEY_ENV, key_from, verify_artifact

    opened = Artifact.open(artifact)
    public = key_from(key, VERIFY_KEY_ENV)
    problems = opened.problems()
    if problems:
        raise MlpackError(
            f"{opened.name} does not match manifest.json: {', '.join(problems[:5])}"
            + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""),
            "rebuild the artifact; never edit it by hand",
        )
    check = verify_artifact(opened, "verified", public)
    app.echo(f"{opened.name}: {len(opened.manifest.files)} files match manifest.json; {check.describe()}")
    for name, why in opened.unhashed().items():
        app.echo(f"  not hashed in manifest.json: {name} ({why})")
    if check.verified:
        app.echo(f"  the signature covers manifest.json and every other file but {' and '.join(UNSIGNED)}")
    else:
        app.echo(f"  without a key this shows integrity, not origin: manifest.json itself is checked only by "
                 f"the signature (--key or ${VERIFY_KEY_ENV})")


def register(cli: typer.Typer) -> None:
    cli.command("verify")(command(verify))
