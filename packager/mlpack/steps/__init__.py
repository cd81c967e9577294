"""Build steps: the parts of `mlpack build` that run external tools.

A target names its steps in `builds = [...]`; each is a small class behind one interface
(`describe` for the progress line, `run` for the work) that returns a typed result,
the manifest section it fills. Progress and timing wrap the steps (`run_steps`); a step
never prints on its own, it logs through its context. A step lives here (bento.py) or
with its concern (awslambda/zip_step.py, trust/sbom_step.py); adding one means listing
its class in `step_class`. app.py assembles the app folder the packaging steps ship.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from ..manifest import Manifest, Section
from ..progress import Progress


@dataclass(frozen=True)
class StepOptions:
    """What the user asked of the steps (`mlpack build` options)."""

    max_cold_start: float | None = None
    snapstart: bool = False  # Lambda: the IaC turns SnapStart on (recorded in the manifest's lambda section)


@dataclass
class StepContext:
    """What a step gets: the staging artifact folder, scratch space and the draft manifest."""

    root: Path  # the artifact being built (a temporary folder until the build is complete)
    work: Path  # scratch space, removed before the artifact is finished
    manifest: Manifest  # the draft: everything but the steps' own sections and the file list
    model: Path  # the shipped model file, root/model/model.onnx
    options: StepOptions = field(default_factory=StepOptions)
    log: Callable[[str], None] = lambda _line: None
    # The accuracy gate's verdict on the shipped model (passed, reason, metrics, data_source).
    gate: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    name: ClassVar[str]  # as targets name it in `builds`
    section: ClassVar[str]  # the Manifest field its result fills
    writes: ClassVar[tuple[str, ...]]  # artifact paths it creates (files, or folders ending in "/")

    def describe(self, manifest: Manifest) -> str:
        """One line for the progress output."""

    def run(self, ctx: StepContext) -> Section:
        """Do the work; return the manifest section that records it."""


@dataclass(frozen=True)
class StepTiming:
    name: str
    seconds: float


def step_class(name: str) -> type[Step]:
    # Imported here: the step modules import this one for the interface.
    from .bento import BentoStep
    from ..awslambda.zip_step import LambdaZipStep
    from ..trust.sbom_step import SbomStep

    steps: dict[str, type[Step]] = {cls.name: cls for cls in (BentoStep, LambdaZipStep, SbomStep)}
    return steps[name]


def run_steps(names: list[str], ctx: StepContext, progress: Progress) -> tuple[dict[str, Section], list[StepTiming]]:
    """Run the named steps in order, each inside a progress step; their results by manifest field."""
    results: dict[str, Section] = {}
    timings = []
    for name in names:
        step = step_class(name)()
        with progress.step(step.describe(ctx.manifest)) as elapsed:
            results[step.section] = step.run(ctx)
        timings.append(StepTiming(name, round(elapsed.seconds, 3)))
    return results, timings
