"""plan_build: what a build will write and run, decided before anything runs. Pure.

The plan pins the requirements once (the Bento, the Lambda zip and the images all use
these), names the steps that run tools, in order, and lists the artifact paths the build
will produce: the rendered files by name, and what each step writes.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import TYPE_CHECKING, Sequence

from pydantic import BaseModel

from ..pinned_runtime import pinned_version
from ..image.cuda import cuda_plan
from ..manifest import MANIFEST, REPORT_FILES, Requirements, Versions
from ..render.templates import template_paths
from ..steps import step_class
from ..targets import RenderGroup, Target

if TYPE_CHECKING:
    from ..processing import ResolvedProcessing

MODEL_FILE = "model/model.onnx"


class PlannedStep(BaseModel):
    name: str
    writes: list[str]  # artifact paths: files, or folders ending in "/" whose contents the tool decides


class BuildPlan(BaseModel):
    artifact: str
    target: Target
    versions: Versions  # measured with here, pinned in what ships
    requirements: Requirements
    steps: list[PlannedStep]  # run in this order, before rendering (memory sizing needs their measurements)
    app: RenderGroup  # the serving app's entry point, rendered into the app folder the steps package
    render: list[RenderGroup]  # rendered into the artifact after the steps
    files: list[str]  # every file path known before the build runs, sorted

    def expected(self, path: str) -> bool:
        """Whether an artifact path is one this plan produces."""
        return path in self.files or any(
            path == w or (w.endswith("/") and path.startswith(w)) for s in self.steps for w in s.writes
        )


def host_versions(target: Target) -> Versions:
    """The versions the model is measured with; what ships pins the same ones, except where
    the target pins its own onnxruntime release (onnxruntime-gpu trails the CPU one)."""
    import platform

    return Versions(
        onnxruntime=pinned_version(target),
        numpy=metadata.version("numpy"),
        bentoml=metadata.version("bentoml"),
        onnx=metadata.version("onnx"),
        python=target.platform.python_version,
        build_python=platform.python_version(),
    )


def pin_requirements(target: Target, versions: Versions, processing: Sequence[str] = (),
                     operators: Sequence[str] = ()) -> Requirements:
    """`processing`: what the artifact's processing imports, already pinned (mlpack.processing);
    `operators`: the model's, which decide what a GPU image carries of CUDA (mlpack.image.cuda)."""
    runtime = [f"{target.runtime.onnxruntime}=={versions.onnxruntime}", f"numpy=={versions.numpy}"]
    cuda = list(cuda_plan(target, operators).requirements) if target.cuda else []
    return Requirements(runtime=runtime, server=[*runtime, *cuda, *processing, f"bentoml=={versions.bentoml}"],
                        processing=list(processing), cuda=cuda)


# Run for every target, after the target's own steps: it lists what they packaged.
EVERY_TARGET_STEPS = ("sbom",)


def plan_build(name: str, target: Target, versions: Versions, processing: ResolvedProcessing | None = None,
               operators: Sequence[str] = (), calibrated: bool = False) -> BuildPlan:
    """`calibrated`: the build has real calibration data, so it writes a drift profile
    (mlpack.monitoring.drift; unless the model's outputs on it cannot be read)."""
    from ..monitoring.drift import PROFILE_FILE

    steps = [PlannedStep(name=step, writes=list(step_class(step).writes))
             for step in [*target.builds, *EVERY_TARGET_STEPS]]
    rendered = [path for group in target.artifact_groups for path in template_paths(group)]
    return BuildPlan(
        artifact=f"{name}-{target.name}",
        target=target,
        versions=versions,
        requirements=pin_requirements(target, versions, processing.packages if processing else (), operators),
        steps=steps,
        app=target.app_group,
        render=target.artifact_groups,
        files=sorted({MANIFEST, MODEL_FILE, *REPORT_FILES, *rendered, *(processing.files if processing else ()),
                      *([PROFILE_FILE] if calibrated else [])}),
    )


# A measured peak is one small request's: larger batches, their JSON and the reply need more.
MEMORY_HEADROOM = 1.5
# Lambda gives CPU in proportion to memory (one vCPU at 1,769 MB): below 512 MB a function
# gets under a third of a vCPU for its session and requests, whatever its peak.
MIN_MEMORY_MB = 512


def memory_mb(model_bytes: int, peak_rss_mb: float | None = None) -> int:
    """Memory to ask for, in 64 MB steps and at least MIN_MEMORY_MB: a measured peak (the
    shipped function's, from the build) times MEMORY_HEADROOM; without a measurement, an
    estimate of the model and onnxruntime's working set."""
    need = MEMORY_HEADROOM * peak_rss_mb if peak_rss_mb else 3 * model_bytes / 2**20 + 256
    return int(math.ceil(max(need, MIN_MEMORY_MB) / 64) * 64)
