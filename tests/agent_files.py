"""The agent's files as mlpack renders them for a target (agent.json, alerts.yaml,
dashboard.json, ...), and what their queries name: shared by the agent's template,
alert and Prometheus tests."""

from __future__ import annotations

import re
from typing import Any

from mlpack.render.templates import render_group

from .manifests import agent_context


def render_agent_files(target_name: str, name: str = "digits", drift: bool = False) -> dict[str, str]:
    """The agent files of an artifact without a drift profile, or with one (`drift`)."""
    ctx = agent_context(target_name, name)
    if drift:
        from .drift_support import drift_context

        ctx = drift_context(target_name, name, model_sha256="c" * 64, tag="0.1.0-cccccccccccc")
    files = render_group("agent", "agent", ctx)
    return {path.removeprefix("agent/"): text for path, text in files.items()}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(mlpack_[a-z0-9_]+|target_info)\b", expr))
