"""The model as a process serves it: one `ServedModel` per process, the same object in the
Bento service and in the Lambda handler.

It owns the session (created once, with the target's settings), checks each request
against the served signature, runs the model and reports the inference to the telemetry
agent. The entry points only translate their transport (BentoML routes, Lambda events)
to these calls and a `RequestError` to HTTP 400.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import RuntimeConfig, load_runtime
from .telemetry import InferenceReporter
from .validation import RequestError

if TYPE_CHECKING:
    from pathlib import Path

RUNTIME_JSON = "runtime.json"


class ServedModel:
    def __init__(self, folder: Path | str) -> None:
        # A str, not a Path: pathlib is not imported at init (a Lambda cold start would pay
        # ~5 ms for it; benchmarks/lambda_cold_start.py measures it).
        self._folder = os.fspath(folder)
        self.config: RuntimeConfig = load_runtime(os.path.join(self._folder, RUNTIME_JSON))
        self.session = self.config.open_session(self._folder)
        self.reporter = InferenceReporter(self.config.labels, self.config.outputs)

    @property
    def folder(self) -> Path:
        """The app folder (runtime.json, the model and what the build bundled beside them)."""
        from pathlib import Path

        return Path(self._folder)

    @property
    def name(self) -> str:
        return self.config.labels.get("model_name", "model")

    def predict(self, payload: Any, started: float | None = None) -> dict[str, Any]:
        """mlpack's JSON: {"<input name>": nested lists} in, {"<output name>": values} out.

        Raises RequestError (HTTP 400) for a request that does not fit the signature."""
        started = time.perf_counter() if started is None else started
        try:
            arrays = self.config.parse_inputs(payload)
        except RequestError:
            self.rejected(started)
            raise
        return self.config.outputs_to_json(self.run(arrays, started))

    def run(self, arrays: dict[str, np.ndarray], started: float | None = None) -> list:
        """The model on arrays that already fit the signature; the outputs in signature order."""
        started = time.perf_counter() if started is None else started
        model_started = time.perf_counter()
        try:
            values = self.session.run(None, arrays)
        except Exception:
            self.reporter.failure(started, "model_error")
            raise
        self.reporter.success(started, model_started, arrays, values)
        return values

    def rejected(self, started: float) -> None:
        """Count a request refused before it reached the model."""
        self.reporter.failure(started, "bad_request")

    def flush(self, timeout_s: float) -> None:
        """Hand queued telemetry to the agent now (a Lambda environment may freeze after a reply)."""
        self.reporter.flush(timeout_s)
