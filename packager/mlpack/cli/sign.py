"""`mlpack sign ARTIFACT --key PRIVATE.pem`: sign an artifact folder (OpenSSF model signing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .application import Application, command
from .options import ArtifactArgument


def sign(
    app: Application,
    artifact: ArtifactArgument,
    key: Annotated[Optional[Path], typer.Option(
        "--key", help="Elliptic-curve private key (PEM). Default: $MLPACK_SIGNING_KEY, a path or the PEM text; "
                      "an encrypted key takes its password from $MLPACK_SIGNING_KEY_PASSWORD.",
        show_default=False)] = None,
    cert: Annotated[Optional[Path], typer.Option(
        "--cert", help="Certificate mode: the signing certificate of the key (PEM).", show_default=False)] = None,
    chain: Annotated[Optional[list[Path]], typer.Option(
        "--chain", metavar="PEM", help="Certificate mode: intermediate and root certificates (repeatable).",
        show_default=False)] = None,
) -> None:
    """Sign an artifact folder in the OpenSSF model-signing format, offline: writes
    ARTIFACT/signature.sig over every file, manifest.json included (all but history.json).
    Sign last: `mlpack image`, `push` and `iac` change the manifest and remove the
    signature. Check it with `mlpack verify ARTIFACT --key PUBLIC.pem`, or with the
    `model_signing` tool itself (docs/security.md); deploy, rollout and push check it
    when given a key."""
    from ..artifact import Artifact
    from ..errors import InputError
    from ..manifest import HISTORY
    from ..trust.signing import SIGNING_KEY_ENV, key_from, sign_artifact

    private = key_from(key, SIGNING_KEY_ENV)
    if private is None:
        raise InputError("no signing key given", f"pass --key PRIVATE.pem or set {SIGNING_KEY_ENV}")
    if chain and cert is None:
        raise InputError("--chain needs --cert", "pass the signing certificate with --cert")
    opened = Artifact.open(artifact)
    written = sign_artifact(opened, private, cert, list(chain or []))
    app.echo(f"{opened.name}: signed manifest.json and every other file but {HISTORY} "
             f"({'certificate' if cert else 'key'} {private.fingerprint}) -> {written.name}")


def register(cli: typer.Typer) -> None:
    cli.command("sign")(command(sign))
