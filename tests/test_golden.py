"""Golden files pin every rendered file of every target for a fixed model.

After an intended change to templates, update the golden files with `make golden` and
review the diff like any other code change (tests/golden_files.py: an update run fails once
it has written a change, and is refused under CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.steps.app import runtime_json
from mlpack.build import BuildPlan, plan_build
from mlpack.render.iac import render_iac
from mlpack.render.templates import render_artifact, render_group
from mlpack.targets import target_files

from .golden_files import match_golden
from .manifests import KUBERNETES_TARGETS, delivery_context, fixed_context

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


# `mlpack build --autoscaler/--delivery`: what each choice changes in the Kubernetes files
# (and KServe's), per server target; the files equal to the default render are not repeated.
DELIVERY_CHOICES = {"keda-argo-rollouts": ("keda", "argo-rollouts"), "hpa-flagger": ("hpa", "flagger"),
                    "keda-flagger": ("keda", "flagger")}
def delivery_changes(target_name: str, choice: str) -> dict[str, str]:
    default = render_iac(fixed_context(target_name))
    chosen = render_iac(delivery_context(target_name, *DELIVERY_CHOICES[choice]))
    return {path: text for path, text in chosen.items() if default.get(path) != text}


@pytest.mark.parametrize("choice", DELIVERY_CHOICES)
@pytest.mark.parametrize("target_name", KUBERNETES_TARGETS)
def test_delivery_files_match_golden(target_name: str, choice: str) -> None:
    changes = delivery_changes(target_name, choice)
    assert changes, "the choice changes no file"
    match_golden(GOLDEN / "delivery" / target_name / choice, changes, f"{target_name} {choice}")
