"""Per-target model optimization: make candidates, gate them on data, time them, pick one.

The float model is always a candidate, so a build never fails only because a smaller
variant lost accuracy: it keeps float and says why. See docs/optimization.md.

Modules: `data` (calibration/gate data and synthetic inputs), `passes` (graph rewrites
and quantization recipes), `sensitivity` (per-layer int8 error), `gate` (accuracy
thresholds), `measure` (outputs and latency), `select` (the target's policy), `report`
(table, report.md, report.json), `pipeline` (optimize_model, which ties them together).
"""

from __future__ import annotations

from .gate import GateSettings
from .pipeline import optimize_model
from .report import Candidate, OptimizationResult

__all__ = ["Candidate", "GateSettings", "OptimizationResult", "optimize_model"]
