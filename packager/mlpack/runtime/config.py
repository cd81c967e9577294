"""runtime.json: the model's signature and the target's onnxruntime settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .validation import outputs_to_json, parse_inputs

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class RuntimeConfig:
    model_file: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    session: dict[str, Any]
    labels: dict[str, str]

    def parse_inputs(self, payload: Any) -> dict:
        return parse_inputs(payload, self.inputs)

    def outputs_to_json(self, values: list) -> dict[str, Any]:
        return outputs_to_json(values, self.outputs)

    def open_session(self, folder: Path):
        """Create the onnxruntime session with the target's providers and options."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        cfg = self.session
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _GRAPH_LEVELS[cfg.get("graph_optimization_level", "all")]
        )
        options.intra_op_num_threads = int(cfg.get("intra_op_threads", 0))
        options.inter_op_num_threads = int(cfg.get("inter_op_threads", 0))
        options.enable_cpu_mem_arena = bool(cfg.get("enable_cpu_mem_arena", True))
        available = set(ort.get_available_providers())
        # A provider the host lacks (CUDA on a CPU box) is skipped, never fatal: CPU is last.
        providers = [p for p in cfg.get("execution_providers", []) if p in available]
        return ort.InferenceSession(
            str(Path(folder) / self.model_file),
            sess_options=options,
            providers=providers or ["CPUExecutionProvider"],
        )


def load_runtime(path: Path | str) -> RuntimeConfig:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return RuntimeConfig(
        model_file=raw["model_file"],
        inputs=raw["inputs"],
        outputs=raw["outputs"],
        session=raw["session"],
        labels=raw.get("labels", {}),
    )
