"""Per-target model optimization: make candidates, measure them, gate, pick one.

The float model is always a candidate, so a build never fails only because a smaller
variant lost accuracy: it keeps float and says why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..model_info import ModelInfo
from ..targets import Target


@dataclass
class Candidate:
    name: str
    path: Path
    size_bytes: int
    passed: bool = True
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizationResult:
    candidates: list[Candidate]
    chosen: Candidate
    data_source: str  # where accuracy was measured: "validation data FILE" or "synthetic inputs"
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "data_source": self.data_source,
            "chosen": self.chosen.name,
            "why": self.why,
            "candidates": [
                {"name": c.name, "size_bytes": c.size_bytes, "passed": c.passed,
                 "reason": c.reason, "metrics": c.metrics}
                for c in self.candidates
            ],
        }

    def to_markdown(self) -> str:
        lines = [
            "# Optimization report", "",
            f"Accuracy measured on: {self.data_source}", "",
            "| variant | size | gate | note |", "|---|---:|---|---|",
        ]
        for c in self.candidates:
            lines.append(
                f"| {c.name} | {c.size_bytes:,} B | {'pass' if c.passed else 'FAIL'} | {c.reason} |"
            )
        lines += ["", f"Chosen: **{self.chosen.name}** ({self.why})", ""]
        return "\n".join(lines)


def optimize_model(
    info: ModelInfo,
    target: Target,
    work_dir: Path,
    *,
    data_path: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> OptimizationResult:
    """Run the target's passes on the model and pick the variant to ship."""
    work_dir.mkdir(parents=True, exist_ok=True)
    float_path = work_dir / "float.onnx"
    shutil.copyfile(info.path, float_path)
    float_candidate = Candidate("float", float_path, float_path.stat().st_size)
    return OptimizationResult(
        candidates=[float_candidate],
        chosen=float_candidate,
        data_source=str(data_path) if data_path else "synthetic inputs",
        why="the original float model (no optimization passes ran)",
    )
