"""Report one event per inference to the mlpack agent, if the agent's client is installed.

The client (`mlpack_agent.client`) uses the standard library only and never raises into
the request path; without it (a bare local run) reporting is a no-op. With a drift
profile in the app (drift.py), each request's model inputs and outputs are also binned
and the counts ride on the client's datagrams; with MLPACK_CAPTURE_RATE set, a sample of
requests' inputs goes to the agent's capture folder (capture.py). Neither is loaded when
telemetry is off.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class _NoTelemetry:
    dropped = 0

    def inference(self, **_: Any) -> None:
        return None

    def provider(self, name: str) -> None:
        return None

    def flush(self, timeout_s: float = 0.0) -> None:
        return None


def telemetry_client(labels: dict[str, str]) -> Any:
    # Turned off (a Lambda zip deployed without the agent's layer): the client and its
    # socket module are not even imported, which a cold start would pay for.
    if os.environ.get("MLPACK_AGENT_DISABLED", "") in ("1", "true", "yes"):
        return _NoTelemetry()
    try:
        from mlpack_agent.client import EventClient
    except ImportError:
        return _NoTelemetry()
    return EventClient.from_env(labels)


class InferenceReporter:
    """Turns one request's timings and values into the agent's inference event."""

    def __init__(self, labels: dict[str, str], outputs: list[dict[str, Any]], drift_profile: str | None = None) -> None:
        self.labels = labels
        self.client = telemetry_client(labels)
        self.drift = self.capture = None
        if not isinstance(self.client, _NoTelemetry):  # else: no profile loaded, nothing sampled
            if drift_profile and hasattr(self.client, "attach_drift"):
                from .drift import load_meter

                self.drift = load_meter(drift_profile, [o["name"] for o in outputs])
            # Only imported when asked for (a cold start pays nothing for it): capture.RATE_ENV.
            if os.environ.get("MLPACK_CAPTURE_RATE") and hasattr(self.client, "capture"):
                from .capture import Capture

                self.capture = Capture.from_env(self.client.capture)
        self._attach()
        # A 1-D integer or string output is a predicted class; a float matrix output is an embedding.
        self._label_index = next(
            (i for i, o in enumerate(outputs)
             if (o["dtype"].startswith("int") or o["dtype"] == "object")
             and o["shape"] is not None and len(o["shape"]) == 1),
            None,
        )

    def success(self, started: float, model_started: float, arrays: dict, values: list) -> None:
        done = time.perf_counter()
        if self.drift is not None:
            self.drift.add(arrays, values)  # a reference: binned when the client sends
        if self.capture is not None:
            self.capture.offer(arrays)
        first = next(iter(arrays.values()), None)
        batch = int(first.shape[0]) if isinstance(first, np.ndarray) and first.ndim else 1
        predicted = output_norm = None
        if self._label_index is not None:
            predicted = np.asarray(values[self._label_index]).ravel()[:256].tolist()
        elif values and isinstance(values[0], np.ndarray) and values[0].dtype.kind == "f":
            output_norm = float(np.linalg.norm(values[0].reshape(batch, -1), axis=1).mean())
        self.client.inference(
            model_ms=(done - model_started) * 1e3,
            total_ms=(done - started) * 1e3,
            batch_size=batch,
            input_bytes=sum(getattr(a, "nbytes", 0) for a in arrays.values()),  # maps and sequences: 0
            ok=True,
            predicted=predicted,
            output_norm=output_norm,
        )

    def provider(self, name: str) -> None:
        """The execution provider the session really runs on: the agent exports it
        (mlpack_execution_provider_info), and GPU artifacts' alert rules watch it."""
        self._provider = name
        try:
            self.client.provider(name)
        except Exception:  # telemetry never fails a request; an older agent client lacks it
            pass

    def flush(self, timeout_s: float) -> None:
        """Send queued events now: a Lambda environment may freeze right after a reply."""
        if self.drift is not None:
            self.drift.send_now()
        try:
            self.client.flush(timeout_s=timeout_s)
        except Exception:  # telemetry never fails a request
            pass

    def reconnect(self) -> None:
        """A new client (and socket) in place of the current one: after a SnapStart
        restore, each copy of the environment sends from a socket of its own."""
        old, self.client = self.client, telemetry_client(self.labels)
        self._attach()
        close = getattr(old, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # telemetry never fails a request
                pass
        if getattr(self, "_provider", None):
            self.provider(self._provider)

    def _attach(self) -> None:
        """The drift counts go out with the client's datagrams."""
        if self.drift is not None and hasattr(self.client, "attach_drift"):
            self.client.attach_drift(self.drift)
        if self.capture is not None and hasattr(self.client, "capture"):
            self.capture.send = self.client.capture

    def failure(self, started: float, error_kind: str) -> None:
        self.client.inference(
            model_ms=0.0,
            total_ms=(time.perf_counter() - started) * 1e3,
            batch_size=0,
            input_bytes=0,
            ok=False,
            error_kind=error_kind,
        )
