"""Per-target model optimization: make candidates, gate them on data, time them, pick one.

The float model is always a candidate, so a build never fails only because a smaller
variant lost accuracy: it keeps float and says why. See docs/optimization.md.

Modules: `data` (calibration/gate data and synthetic inputs), `passes` (graph rewrites
and quantization recipes), `variants/` (the registry: one module per variant, with its
config, what it needs from earlier variants, and when it applies), `run` (what variants
share while they run), `smooth` and `sensitivity` (what two variants measure), `gate`
(accuracy thresholds), `measure` (outputs and latency, in sessions made by the serving
runtime), `select` (the target's policy), `report` (table, report.md, report.json),
`pipeline` (optimize_model, which ties them together).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gate import GateSettings
    from .pipeline import make_candidates, optimize_model, time_and_pick
    from .report import Candidate, OptimizationResult

__all__ = ["Candidate", "GateSettings", "OptimizationResult", "make_candidates", "optimize_model", "time_and_pick"]

# Loaded on first use: target files import `variants` to check their [optimize] table,
# and that must not load onnx and onnxruntime with the pipeline.
_HOME = {"Candidate": "report", "GateSettings": "gate", "OptimizationResult": "report",
         "make_candidates": "pipeline", "optimize_model": "pipeline", "time_and_pick": "pipeline"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOME[name]}", __name__), name)
