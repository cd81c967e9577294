"""The model as a process serves it: one `ServedModel` per process, the same object in the
Bento service and in the Lambda handler.

It owns the session (created once, with the target's settings), checks each request
against the served signature, runs the model and reports the inference to the telemetry
agent. The entry points only translate their transport (HTTP requests, Lambda events)
to these calls, and what they raise to errors.py's body.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import RuntimeConfig, load_runtime
from .errors import first_line
from .limits import RequestLimits
from .processing import Processing, ServedSignature, load_processing, run_groups
from .providers import allow_cpu, check_session
from .telemetry import InferenceReporter
from .validation import RequestError, outputs_to_json, parse_inputs, read_json

if TYPE_CHECKING:
    from pathlib import Path

RUNTIME_JSON = "runtime.json"
REFUSED_HINT = "the inputs fit the served signature, but the model cannot compute on their sizes: send the sizes it was made for"


class ServedModel:
    def __init__(self, folder: Path | str) -> None:
        # A str, not a Path: pathlib is not imported at init (a Lambda cold start would pay
        # ~5 ms for it; benchmarks/lambda_cold_start.py measures it).
        self._folder = os.fspath(folder)
        self.config: RuntimeConfig = load_runtime(os.path.join(self._folder, RUNTIME_JSON))
        self.session = self.config.open_session(self._folder)
        # Never on the CPU in silence: a GPU artifact whose provider did not load raises
        # ProviderUnavailable (not ready) unless MLPACK_ALLOW_CPU=1 says to serve anyway.
        self.provider = check_session(self.session, self.config.session, allowed_on_cpu=allow_cpu())
        profile = self.config.drift_profile
        self.reporter = InferenceReporter(self.config.labels, self.config.outputs,
                                          os.path.join(self._folder, profile) if profile else None)
        self.reporter.provider(self.provider)
        self.processing: Processing = load_processing(
            self.config.processing, self._folder, self.config.inputs, self.config.outputs)

    @property
    def signature(self) -> ServedSignature:
        """What the service takes and answers, after processing (text, an image, class names):
        /predict checks requests against it, the v2 protocol's metadata lists it."""
        return self.processing.signature

    @property
    def folder(self) -> Path:
        """The app folder (runtime.json, the model and what the build bundled beside them)."""
        from pathlib import Path

        return Path(self._folder)

    @property
    def name(self) -> str:
        return self.config.labels.get("model_name", "model")

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The served inputs (name, numpy dtype, shape) after processing, in signature order."""
        return self.signature.inputs

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The served outputs (name, numpy dtype, shape) after processing, in the order `infer`
        returns them."""
        return self.signature.outputs

    @property
    def limits(self) -> RequestLimits:
        return self.config.limits

    def predict_json(self, body: bytes | str, started: float | None = None) -> dict[str, Any]:
        """/predict, from the request's body to its answer: {"inputs": {...}} in,
        {"outputs": {...}} out, in the Bento service and the Lambda handler alike.

        Raises RequestError (HTTP 400) for a body that is not that JSON object or does not
        fit the signature."""
        started = time.perf_counter() if started is None else started
        try:
            request = read_json(body)
        except RequestError:
            self.rejected(started)
            raise
        return self.answer(request, started)

    def answer(self, request: Any, started: float | None = None) -> dict[str, Any]:
        """/predict's answer to its request already parsed (a Lambda's direct invocation)."""
        started = time.perf_counter() if started is None else started
        if not isinstance(request, dict):
            self.rejected(started)
            raise RequestError('the request is not a JSON object: expected {"inputs": {"<input name>": array}}')
        return {"outputs": self.predict(request.get("inputs"), started)}

    def predict(self, payload: Any, started: float | None = None) -> dict[str, Any]:
        """mlpack's JSON: {"<input name>": nested lists} in, {"<output name>": values} out.

        Raises RequestError (HTTP 400) for a request that does not fit the signature."""
        return self.to_json(self.infer(payload, started))

    def predict_upload(self, data: bytes, started: float | None = None) -> dict[str, Any]:
        """An uploaded file (an encoded image) as the one row of the input uploads fill."""
        started = time.perf_counter() if started is None else started
        if self.processing.upload_input is None:
            self.rejected(started)
            raise RequestError("this model takes no file uploads: send JSON inputs")
        return self.to_json(self.infer({self.processing.upload_input: np.array([data], dtype=object)}, started))

    def infer(self, payload: Any, started: float | None = None) -> list:
        """{"<input name>": nested lists or arrays} in, the served outputs in signature order
        out; what every route (mlpack's /predict, the Open Inference Protocol) calls. The
        artifact's processing runs around the model (tokenizer, image spec, labels, hook).

        Raises RequestError (HTTP 400) for a request that does not fit the signature or the
        artifact's request limits (rows, non-finite numbers), or that processing refuses."""
        started = time.perf_counter() if started is None else started
        try:
            arrays = parse_inputs(payload, self.inputs)
            self.limits.check_arrays(arrays, self.inputs)
            feeds = self.processing.preprocess(arrays)
        except RequestError:
            self.rejected(started)
            raise
        return self.processing.postprocess(self.run(feeds, started))

    def to_json(self, values: list) -> dict[str, Any]:
        """Served outputs as JSON-ready values, keyed by output name."""
        return outputs_to_json(values, self.outputs)

    def run(self, arrays: dict[str, np.ndarray], started: float | None = None) -> list:
        """The model on arrays that already fit the signature; the outputs in signature order."""
        started = time.perf_counter() if started is None else started
        model_started = time.perf_counter()
        try:
            values = run_groups(self.session, arrays, self.processing.groups(arrays))
        except Exception as exc:
            if not _refused(exc):
                self.reporter.failure(started, "model_error")
                raise
            self.rejected(started)
            raise RequestError(f"the model refused these inputs: {first_line(exc)}", hint=REFUSED_HINT) from None
        self.reporter.success(started, model_started, arrays, values)
        return values

    def rejected(self, started: float) -> None:
        """Count a request refused before it reached the model."""
        self.reporter.failure(started, "bad_request")

    def flush(self, timeout_s: float) -> None:
        """Hand queued telemetry to the agent now (a Lambda environment may freeze after a reply)."""
        self.reporter.flush(timeout_s)


def _refused(exc: Exception) -> bool:
    """Whether onnxruntime refused the request's tensors: its own input checks
    (INVALID_ARGUMENT: rank, element type, a fixed dimension) or a node failing on them
    (FAIL: sizes the signature's free axes allowed that its operators cannot combine). A
    400 with onnxruntime's message; any other failure is the model's or the server's (500)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument  # loaded with the session

    return isinstance(exc, (Fail, InvalidArgument))
