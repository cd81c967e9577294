"""What the user asks `mlpack build` for, checked before anything is written."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from ..errors import InputError
from ..manifest import NAME_PATTERN, NAME_RULE
from ..optimize import GateSettings
from ..processing.request import ProcessingRequest
from ..targets import Target

# Lambda supports SnapStart for Python from the python3.12 runtime on.
SNAPSTART_MIN_PYTHON = (3, 12)


class BuildRequest(BaseModel):
    model: Path | None = None  # None builds the embedded demo
    target: str
    out: Path = Path(".")
    name: str | None = None
    force: bool = False
    calibration: Path | None = None
    max_cold_start: float | None = None
    snapstart: bool = False  # Lambda targets: SnapStart in the IaC (docs/deploy.md)
    gate: GateSettings = GateSettings()  # the accuracy gate, with the user's overrides
    variant: str | None = None  # --variant: ship this one, not the policy's pick
    sample_shapes: dict[str, tuple[int, ...]] = {}  # --sample-shape: synthetic inputs' shapes, by input
    # The target's [serving] request limits, changed for this artifact (None keeps the target's).
    max_request_mb: float | None = None
    max_rows: int | None = None
    allow_non_finite: bool | None = None
    # The target's [drift] settings changed for this artifact (`--drift KEY=VALUE`), as given.
    drift: dict[str, str] = {}

    processing: ProcessingRequest = ProcessingRequest()  # --tokenizer, --labels, --image-preprocess, --processing
    # The target's [slo], changed for this artifact (--slo KEY=VALUE), and its Kubernetes
    # autoscaler and delivery engine (--autoscaler, --delivery; None keeps the target's).
    slo: dict[str, str] = {}
    autoscaler: str | None = None
    delivery: str | None = None

    def serving_overrides(self) -> dict[str, float | int | bool | None]:
        return {"max_request_mb": self.max_request_mb, "max_rows": self.max_rows,
                "allow_non_finite": self.allow_non_finite}

    def resolve_target(self, target: Target) -> Target:
        """The target as this artifact is built for it: what its manifest records."""
        if (self.autoscaler or self.delivery) and not target.renders_kubernetes:
            option = "--autoscaler" if self.autoscaler else "--delivery"
            raise InputError(f"{option} applies to targets with Kubernetes manifests; target {target.name} has none",
                             f"drop {option}, or choose x86-cpu, cuda-gpu or cuda12-gpu")
        return (target.with_serving(**self.serving_overrides()).with_slo(**self.slo).with_drift(**self.drift)
                .with_kubernetes(autoscaler=self.autoscaler, delivery=self.delivery))


def default_name(model: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", model.stem.lower()).strip("-")[:40].strip("-")
    return name or "model"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InputError(f"invalid --name {name!r}: use {NAME_RULE}", "pass a plain name, e.g. --name my-model")
    return name


def check_snapstart(target: Target) -> None:
    """--snapstart needs a Lambda zip (SnapStart has no container images) on Python 3.12+."""
    if "lambda-zip" not in target.builds:
        raise InputError(f"--snapstart applies to Lambda functions; target {target.name} builds no Lambda zip",
                         "drop --snapstart, or choose a Lambda target (see `mlpack targets`)")
    version = tuple(int(part) for part in target.platform.python_version.split("."))
    if version < SNAPSTART_MIN_PYTHON:
        raise InputError(f"--snapstart needs Python 3.12 or later; target {target.name} runs "
                         f"python{target.platform.python_version}", "drop --snapstart")
