"""`mlpack iac ARTIFACT`: render the artifact's infrastructure code (iac/) again from its
manifest.json, e.g. after `mlpack push` recorded the image digest, so that deployments
pin the image by digest.

Only the target's IaC render groups (templates under `templates/iac/`) are rendered, from
the target the artifact was built for (its manifest's snapshot, never `targets/`); every
other file stays as built. The new iac/ folder replaces the old one in a single rename,
and the manifest's file list is updated to match. Both are signed: a signed artifact
loses its signature first (`Artifact.resign_note` says so).
"""

from __future__ import annotations


from ..artifact import Artifact
from ..errors import MlpackError
from ..fsutil import staged_folder
from .context import RenderContext
from .templates import render_artifact, write_files
from ..targets import RenderGroup, Target

IAC_DIR = "iac"
IAC_TEMPLATES = "iac/"


def iac_groups(target: Target) -> list[RenderGroup]:
    """The target's render groups that write infrastructure code."""
    return [g for g in target.artifact_groups if g.templates.startswith(IAC_TEMPLATES)]


def render_iac(ctx: RenderContext) -> dict[str, str]:
    return render_artifact(ctx, iac_groups(ctx.target))


def regenerate_iac(artifact: Artifact) -> list[str]:
    """Rewrite the artifact's iac/ from its manifest; returns the artifact paths written."""
    ctx = RenderContext.from_manifest(artifact.manifest)
    files = render_iac(ctx)
    if not files:
        raise MlpackError(f"target {ctx.target.name} has no infrastructure templates", "nothing to do")
    if any(not path.startswith(f"{IAC_DIR}/") for path in files):
        raise MlpackError("an IaC render group writes outside iac/", "fix the target's [[render]] entries")

    artifact.unsign()
    # Render beside the old folder, then swap: readers see the old or the new iac/, never a mix.
    with staged_folder(artifact.path(IAC_DIR)) as staging:
        write_files(staging, {path.removeprefix(f"{IAC_DIR}/"): text for path, text in files.items()})
    artifact.update(lambda m: artifact.refresh_files(m, IAC_DIR))
    return sorted(files)
