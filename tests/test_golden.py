"""Golden files pin every rendered file of every target for a fixed model.

After an intended change to templates, update the golden files with `make golden` and
review the diff like any other code change (tests/golden_files.py: an update run fails once
it has written a change, and is refused under CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.app import runtime_json
from mlpack.build import BuildPlan, plan_build
from mlpack.render import render_artifact, render_group
from mlpack.targets import target_files

from .golden_files import match_golden
from .manifests import fixed_context

GOLDEN = Path(__file__).parent / "golden"


def rendered(target_name: str) -> dict[str, str]:
    """Every rendered file: the artifact's, and the app entry point's under <group>-app/."""
    ctx = fixed_context(target_name)
    files = render_artifact(ctx)
    entry = ctx.target.app_group.templates
    for path, text in render_group(entry, f"{entry}-app", ctx).items():
        files[path] = text
    files[f"{entry}-app/runtime.json"] = runtime_json(ctx)
    files["plan.json"] = golden_plan(target_name).model_dump_json(indent=2, exclude={"target"}) + "\n"
    return files


def golden_plan(target_name: str) -> BuildPlan:
    """The build plan for the golden model: its steps, pinned requirements and every path."""
    ctx = fixed_context(target_name)
    return plan_build(ctx.name, ctx.target, ctx.versions)


@pytest.mark.parametrize("target_name", sorted(target_files()))
def test_rendered_files_match_golden(target_name: str) -> None:
    match_golden(GOLDEN / target_name, rendered(target_name), target_name)
