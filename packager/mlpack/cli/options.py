"""Options that several commands share, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from ..errors import InputError
from ..optimize import GateSettings
from ..processing.request import ProcessingRequest


def _gate_help() -> str:
    keys = "; ".join(f"{name} ({field.default}): {field.description}" for name, field in GateSettings.model_fields.items())
    return f"Change an accuracy-gate threshold (repeatable). Keys, with their strict defaults: {keys}."


GateOption = Annotated[Optional[list[str]], typer.Option("--gate", metavar="KEY=VALUE", help=_gate_help())]


def _drift_help() -> str:
    from ..targets import Drift

    keys = "; ".join(f"{name} ({field.default}): {field.description}" for name, field in Drift.model_fields.items())
    return (f"Change a drift setting of the target's [drift] (repeatable). Keys, with their defaults: {keys}.")


DriftOption = Annotated[Optional[list[str]], typer.Option("--drift", metavar="KEY=VALUE", help=_drift_help())]


def _slo_help() -> str:
    from ..targets import Slo

    keys = "; ".join(f"{name}: {field.description}" for name, field in Slo.model_fields.items())
    return (f"Change the service-level objective of the target's [slo] for this artifact (repeatable); every "
            f"generated alert and canary check derives from it (docs/kubernetes.md). Keys: {keys}.")


SloOption = Annotated[Optional[list[str]], typer.Option("--slo", metavar="KEY=VALUE", help=_slo_help())]
VariantOption = Annotated[Optional[str], typer.Option(
    "--variant", metavar="NAME",
    help="Ship this variant (float, or one the target tries: `mlpack targets --variants` lists them) instead of the one the "
         "target's policy picks; it must still pass the accuracy gate. Only it (and the variants it builds on) is made, "
         "so the build is quicker; pins the pick for reproducible builds.",
    show_default=False)]
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
VerifyKeyOption = Annotated[
    Optional[Path],
    typer.Option(
        "--key",
        help="Public key (PEM) or CA certificate that the artifact's signature must verify with; an unsigned "
             "artifact is then refused. Default: $MLPACK_VERIFY_KEY (a path or the PEM text).",
        show_default=False,
    ),
]
SampleShapeOption = Annotated[Optional[list[str]], typer.Option(
    "--sample-shape", metavar="INPUT=DIMS",
    help="Without --calibration: the shape of one request for INPUT (e.g. image=1x3x320x480), which the "
         "synthetic inputs the gate runs on take (repeatable). By default free axes get 16, or for images a "
         "multiple of the model's downsampling.", show_default=False)]
CalibrationOption = Annotated[
    Optional[Path],
    typer.Option(help=".npz of inputs by name (and optional labels, as `labels` or `y`) for calibration and the "
                       "accuracy gate; or, for a model with a tokenizer, a .txt of sentences, one per line."),
]

# Processing declared in the artifact (docs/processing.md).
TokenizerOption = Annotated[Optional[str], typer.Option(
    "--tokenizer", metavar="FILE|none",
    help="Hugging Face tokenizer.json: the service takes a `text` input (one string per row) in place of the "
         "token ids. Default: tokenizer.json beside the model, when the model takes token ids; `none` ignores it.")]
LabelsOption = Annotated[Optional[str], typer.Option(
    "--labels", metavar="FILE|model",
    help="Class names, one per line in class-index order, or `model` for the model's own class labels: answers "
         "carry the top class and the top-k classes with their probabilities.")]
TopKOption = Annotated[int, typer.Option("--top-k", min=1, metavar="K", help="With --labels: how many classes an answer lists.")]
ImagePreprocessOption = Annotated[Optional[Path], typer.Option(
    "--image-preprocess", metavar="SPEC.toml",
    help="Image preprocessing (size, resize, mean/std, channels, layout, dtype): the service takes PNG or JPEG "
         "images (an upload, or base64 in JSON) for the model's image input.")]
ProcessingOption = Annotated[Optional[Path], typer.Option(
    "--processing", metavar="MODULE.py",
    help="A Python module with preprocess and/or postprocess functions run around the model; checked at build "
         "on a sample input and shipped in the artifact with its sha256.")]


def processing_request(tokenizer: str | None, labels: str | None, top_k: int, image_preprocess: Path | None,
                       processing: Path | None) -> ProcessingRequest:
    return ProcessingRequest(tokenizer=tokenizer, labels=labels, top_k=top_k, image_preprocess=image_preprocess,
                             hook=processing)


def sample_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`--sample-shape INPUT=DIMS` items: input name -> the shape of one request."""
    shapes = {}
    for item in items or []:
        name, _, dims = item.partition("=")
        parts = dims.lower().split("x") if dims else []
        if not name.strip() or not parts or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise InputError(f"--sample-shape {item!r} is not INPUT=DIMS", "e.g. --sample-shape image=1x3x320x480")
        shapes[name.strip()] = tuple(int(p) for p in parts)
    return shapes


def key_values(option: str, items: list[str] | None, example: str, known: list[str] | None = None) -> dict[str, str]:
    """`--option KEY=VALUE` items (repeatable) as a dict; a malformed item or an unknown key is one line."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{option} {item!r} is not KEY=VALUE", f"e.g. {option} {example}")
        if known is not None and key.strip() not in known:
            raise InputError(f"{option} {key.strip()!r} is not a key it knows", f"its keys are {', '.join(known)}")
        overrides[key.strip()] = value.strip()
    return overrides


def gate_settings(items: list[str] | None) -> GateSettings:
    """The accuracy gate: strict defaults, changed by `--gate KEY=VALUE` items."""
    overrides = key_values("--gate", items, "min_cosine_mean=0.98")
    try:
        return GateSettings(**overrides)
    except ValidationError as exc:
        item = exc.errors()[0]
        key = ".".join(str(p) for p in item["loc"])
        raise InputError(f"--gate {key}: {item['msg']}", f"gate keys are {', '.join(GateSettings.model_fields)}") from exc
