"""runtime.json: the model's signature and the target's onnxruntime settings.

`open_session` is the one place a session is configured: serving calls it through
`RuntimeConfig.open_session`, and mlpack's optimizer calls it with the same settings to
gate and time each variant, so what was measured is what is served.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .limits import RequestLimits
from .validation import outputs_to_json, parse_inputs

if TYPE_CHECKING:
    from pathlib import Path  # annotations only: serving does not import pathlib at init

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# onnxruntime prints its own coloured, multi-line log on stderr, errors included (a load
# failure is logged at ERROR, then raised). The exception carries the message, so only
# FATAL is left to the native log.
_NATIVE_LOG_SEVERITY = 4
# Where a model given as bytes finds its external data files (a file finds them beside it).
_EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


def session_options(settings: Mapping[str, Any]):
    """onnxruntime SessionOptions from runtime.json's `session` settings: graph level,
    threads (0 lets onnxruntime choose), CPU memory arena, denormals flushed to zero;
    missing keys take defaults.
    `force_spinning_stop` is never in runtime.json: the optimizer adds it (optimize/measure.py)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(_NATIVE_LOG_SEVERITY)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _GRAPH_LEVELS[settings.get("graph_optimization_level", "all")]
    )
    options.intra_op_num_threads = int(settings.get("intra_op_threads", 0))
    options.inter_op_num_threads = int(settings.get("inter_op_threads", 0))
    options.enable_cpu_mem_arena = bool(settings.get("enable_cpu_mem_arena", True))
    options.log_severity_level = _NATIVE_LOG_SEVERITY
    if settings.get("denormal_as_zero"):
        # Values under 1.2e-38 become 0 in onnxruntime's threads: the attention probabilities of
        # padded positions are such values, and x86 arithmetic on them is many times slower.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if settings.get("force_spinning_stop"):
        # Only for sessions run in turn in one process (the optimizer times its candidates so):
        # idle threads spinning on after a run take the next session's cores (measure.latencies).
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def serving_providers(settings: Mapping[str, Any]) -> list[str]:
    """The settings' execution providers that this host has, in order; CPU when none is."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    # A provider the host lacks (CUDA on a CPU box) is skipped, never fatal: CPU is last.
    return [p for p in settings.get("execution_providers", []) if p in available] or ["CPUExecutionProvider"]


def open_session(model: str | Path | bytes, settings: Mapping[str, Any], providers: Sequence[str] | None = None,
                 external_data_folder: str | Path | None = None):
    """An onnxruntime session for a model file (or serialized model) with these settings
    (and without the graph optimizers they disable).

    `providers` defaults to `serving_providers(settings)`; the optimizer passes its own
    (the CPU provider to gate, the target's providers to time). A serialized model whose
    weights are external data reads them from `external_data_folder`."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    chosen = list(providers) if providers else serving_providers(settings)
    options = session_options(settings)
    if external_data_folder is not None and isinstance(model, bytes):
        options.add_session_config_entry(_EXTERNAL_DATA_FOLDER, str(external_data_folder))
    # Named graph optimizers left out (the target's `disabled_optimizers`): a fusion whose
    # kernel is slower than the ops it replaces on the target's CPU (docs/optimization.md).
    return ort.InferenceSession(source, sess_options=options, providers=chosen,
                                disabled_optimizers=list(settings.get("disabled_optimizers", ())) or None)


@dataclass(frozen=True)
class RuntimeConfig:
    model_file: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    session: dict[str, Any]
    labels: dict[str, str]
    limits: RequestLimits = RequestLimits()
    processing: dict[str, Any] | None = None  # see processing/: the served signature and its steps
    drift_profile: str | None = None  # the app's drift profile (drift.py), relative to the app folder

    def parse_inputs(self, payload: Any) -> dict:
        return parse_inputs(payload, self.inputs)

    def outputs_to_json(self, values: list) -> dict[str, Any]:
        return outputs_to_json(values, self.outputs)

    def open_session(self, folder: Path | str):
        """Create the onnxruntime session with the target's providers and options."""
        return open_session(os.path.join(folder, self.model_file), self.session)


def load_runtime(path: Path | str) -> RuntimeConfig:
    with open(path, encoding="utf-8") as file:
        raw = json.load(file)
    return RuntimeConfig(
        model_file=raw["model_file"],
        inputs=raw["inputs"],
        outputs=raw["outputs"],
        session=raw["session"],
        labels=raw.get("labels", {}),
        limits=RequestLimits.from_json(raw.get("limits")),
        processing=raw.get("processing"),
        drift_profile=(raw.get("drift") or {}).get("profile"),
    )
