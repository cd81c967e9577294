"""Options that several commands share, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from ..errors import InputError
from ..optimize import GateSettings


def _gate_help() -> str:
    keys = "; ".join(f"{name} ({field.default}): {field.description}" for name, field in GateSettings.model_fields.items())
    return f"Change an accuracy-gate threshold (repeatable). Keys, with their strict defaults: {keys}."


GateOption = Annotated[Optional[list[str]], typer.Option("--gate", metavar="KEY=VALUE", help=_gate_help())]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print one JSON summary on stdout instead of the text (for CI); progress stays on stderr.")]
ArtifactArgument = Annotated[
    Path, typer.Argument(help="An artifact folder written by `mlpack build`.", show_default=False)
]
BuilderOption = Annotated[
    Optional[str],
    typer.Option("--builder", help="docker (a reachable Docker daemon) or buildah (daemonless); default: detect."),
]
CalibrationOption = Annotated[
    Optional[Path],
    typer.Option(help=".npz of inputs by name (and optional labels, as `labels` or `y`) for calibration and the "
                       "accuracy gate."),
]


def gate_settings(items: list[str] | None) -> GateSettings:
    """The accuracy gate: strict defaults, changed by `--gate KEY=VALUE` items."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--gate {item!r} is not KEY=VALUE", "e.g. --gate min_cosine_mean=0.98")
        overrides[key.strip()] = value.strip()
    try:
        return GateSettings(**overrides)
    except ValidationError as exc:
        item = exc.errors()[0]
        key = ".".join(str(p) for p in item["loc"])
        raise InputError(f"--gate {key}: {item['msg']}", f"gate keys are {', '.join(GateSettings.model_fields)}") from exc
