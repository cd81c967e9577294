"""Report inference events to the mlpack agent: standard library only, never raises.

The service calls `EventClient.inference(...)` once per request. The call appends a
tuple to an in-memory queue; every `batch` events (or every `linger_s` seconds, from a
background thread) the queue goes out as one non-blocking Unix datagram. If the agent
is absent, the batch is dropped and counted in `client.dropped`; if its socket is full
(the agent is a few datagrams behind), events wait in memory (up to 10,000, then new
ones are dropped and counted). The request path never waits and never sees an exception.

Once at start, the service may call `EventClient.provider(name)` with the onnxruntime
execution provider its session really runs on (`session.get_providers()[0]`); every
later datagram carries it, and the agent exports it as
`mlpack_execution_provider_info{execution_provider="..."} 1`.

The agent labels everything it exports from its own configuration: `labels` stay with
the client (the caller's reference) and are not sent.

Drift: the service may `attach_drift(source)`, an object with `take()` and `put_back(value)`
(mlpack_runtime.drift.DriftMeter). Each datagram then carries what `take()` returns: the
summed bin counts of the requests since the last datagram (never the data), under
`"drift"`; when the source has a `waiting()` that says counts wait and no event is left
to carry them, the lingerer sends them in a datagram of their own. Sampled capture:
`capture(json_text)` sends one request's inputs, already
encoded and size-capped by the service, in a datagram of its own (off unless the service
turns it on).

Environment (all optional):
    MLPACK_AGENT_SOCKET    the agent's socket (default /tmp/mlpack-agent/agent.sock)
    MLPACK_AGENT_BATCH     events per datagram (default 64; 1 sends every event at once)
    MLPACK_AGENT_LINGER_S  longest an event waits in the queue (default 0.1 s)
    MLPACK_AGENT_DISABLED  "1" turns reporting off
"""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import threading
import time
from .protocol import EXECUTION_PROVIDER_PATTERN, MAX_DATAGRAM_BYTES, VERSION
from .protocol import socket_path as default_socket_path

_DEFAULT_BATCH = 64
_DEFAULT_LINGER_S = 0.1
# Events kept while the agent's socket is full; beyond this new events are dropped.
_MAX_PENDING = 10_000
# After the socket was full, wait this long before trying again (the lingerer retries too).
_RETRY_S = 0.005
_INF = float("inf")


def _plain(value: object) -> object:
    """JSON fallback for numpy scalars and arrays a service may hand over."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=_plain).encode


class EventClient:
    """Batches inference events into datagrams for the agent. Thread-safe, fork-safe."""

    def __init__(
        self,
        labels: dict[str, str] | None = None,
        socket_path: str | None = None,
        batch: int = _DEFAULT_BATCH,
        linger_s: float = _DEFAULT_LINGER_S,
        enabled: bool = True,
    ) -> None:
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.socket_path = socket_path or default_socket_path()
        self.batch = max(1, int(batch))
        self.linger_s = linger_s
        self.enabled = enabled
        self.execution_provider: str | None = None
        self._drift = None  # see attach_drift
        self.sent = 0  # events handed to the agent's socket
        self.dropped = 0  # events lost: agent absent, socket full, or client error
        self.dropped_captures = 0
        self._queue: collections.deque[tuple] = collections.deque()
        self._flush_lock = threading.Lock()
        self._retry_at = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._set_prefix()
        self._start_lingerer()
        os.register_at_fork(after_in_child=self._after_fork)

    @classmethod
    def from_env(cls, labels: dict[str, str] | None = None) -> "EventClient":
        env = os.environ
        return cls(
            labels,
            socket_path=default_socket_path(),
            batch=_int(env.get("MLPACK_AGENT_BATCH"), _DEFAULT_BATCH),
            linger_s=_float(env.get("MLPACK_AGENT_LINGER_S"), _DEFAULT_LINGER_S),
            enabled=env.get("MLPACK_AGENT_DISABLED", "") not in ("1", "true", "yes"),
        )

    def inference(
        self,
        model_ms: float | None,
        total_ms: float | None,
        batch_size: int,
        input_bytes: int,
        ok: bool,
        error_kind: str | None = None,
        predicted: list[int] | None = None,
        output_norm: float | None = None,
    ) -> None:
        """Record one request. Costs about a microsecond; never blocks, never raises."""
        if not self.enabled:
            return
        if output_norm is not None:
            try:  # NaN or infinity (a model's bad output): the request still counts, without a norm
                if not 0.0 <= output_norm < _INF:
                    output_norm = None
            except Exception:  # noqa: BLE001 - the request path must never see telemetry errors
                output_norm = None
        queue = self._queue
        if len(queue) >= _MAX_PENDING:
            self.dropped += 1
            return
        queue.append(
            (model_ms, total_ms, batch_size, input_bytes, ok, error_kind, predicted, output_norm)
        )
        if len(queue) >= self.batch:
            self.flush()

    def provider(self, name: str) -> None:
        """Report the onnxruntime execution provider the model's session really runs on
        (e.g. "CUDAExecutionProvider"); call once at start. It is sent at once and carried by
        every later datagram, so an agent that starts or restarts later learns it too. A name
        that is not an execution provider's (EXECUTION_PROVIDER_PATTERN) is ignored."""
        if not isinstance(name, str) or re.fullmatch(EXECUTION_PROVIDER_PATTERN, name) is None:
            return
        self.execution_provider = name
        self._set_prefix()
        if self.enabled:
            try:
                self._send([])
            except Exception:  # noqa: BLE001 - never raises
                pass

    def attach_drift(self, source) -> None:
        """Send `source.take()` (drift bin counts) with every datagram; `source.put_back(value)`
        gets back a value the agent's full socket did not take."""
        self._drift = source

    def capture(self, inputs_json: str) -> None:
        """Send one sampled request's inputs (a JSON object as text) to the agent's capture
        folder, at once; dropped (and counted in `dropped_captures`) if the socket is full
        or the agent absent. Never raises."""
        if not self.enabled:
            return
        try:
            payload = f'{self._prefix}{self.dropped},"capture":{inputs_json},"events":[]}}'.encode()
            if len(payload) <= MAX_DATAGRAM_BYTES:
                self._sock.sendto(payload, self.socket_path)
                return
        except Exception:  # noqa: BLE001 - never raises
            pass
        self.dropped_captures += 1

    def flush(self, timeout_s: float = 0.0) -> None:
        """Send what is queued now. With `timeout_s`, wait up to that long for a full
        socket to drain (the end of a Lambda invocation, before the environment freezes)."""
        self._flush_once()
        if timeout_s > 0 and self._queue:
            deadline = time.monotonic() + timeout_s
            while self._queue and time.monotonic() < deadline:
                time.sleep(_RETRY_S)
                self._flush_once()

    def _flush_once(self) -> None:
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is flushing; it will take these events too
        try:
            queue = self._queue
            while queue and time.monotonic() >= self._retry_at:
                n = min(len(queue), self.batch)
                events = [queue.popleft() for _ in range(n)]
                unsent = self._send(events)
                if unsent:  # the agent's socket is full: keep them, try again shortly
                    queue.extendleft(reversed(unsent))
                    self._retry_at = time.monotonic() + _RETRY_S
                    return
            if not queue and time.monotonic() >= self._retry_at and self._drift_waiting():
                self._send_drift()
        except Exception:  # noqa: BLE001 - the request path must never see telemetry errors
            pass
        finally:
            self._flush_lock.release()

    def close(self, timeout_s: float = 0.0) -> None:
        self.flush(timeout_s)
        self._sock.close()

    # -- internals -------------------------------------------------------------------

    def _send(self, events: list[tuple]) -> list[tuple]:
        """Send events; returns those to retry because the agent's socket is full."""
        drift = self._take_drift()
        try:
            encoded = _encode(events)
            extra = f',"drift":{_encode(drift)}' if drift else ""
        except (TypeError, ValueError):
            self._put_back(drift)
            self.dropped += len(events)
            return []
        payload = f"{self._prefix}{self.dropped}{extra},\"events\":{encoded}}}".encode()
        if len(payload) > MAX_DATAGRAM_BYTES:
            if len(events) > 1:
                self._put_back(drift)  # the first part sent takes it
                half = len(events) // 2
                unsent = self._send(events[:half])
                return unsent + events[half:] if unsent else self._send(events[half:])
            if events and events[0][6] is not None:
                # One event with a huge `predicted` list: keep the measurement, not the list.
                self._put_back(drift)
                return self._send([events[0][:6] + (None, events[0][7])])
            # Counts beyond the protocol's size (a profile mlpack would not write): events only.
            drift, payload = None, f"{self._prefix}{self.dropped},\"events\":{encoded}}}".encode()
        try:
            self._sock.sendto(payload, self.socket_path)
        except BlockingIOError:  # EAGAIN: the agent is behind by a few datagrams
            self._put_back(drift)
            return events
        except OSError:  # ENOENT/ECONNREFUSED: no agent to send to
            self.dropped += len(events)
        else:
            self.sent += len(events)
        return []

    def _take_drift(self):
        source = self._drift
        if source is None:
            return None
        try:
            return source.take()
        except Exception:  # noqa: BLE001 - drift is best effort; events still go out
            return None

    def _put_back(self, drift) -> None:
        if drift:
            try:
                self._drift.put_back(drift)
            except Exception:  # noqa: BLE001
                pass

    def _set_prefix(self) -> None:
        provider = f',"execution_provider":"{self.execution_provider}"' if self.execution_provider else ""
        self._prefix = f'{{"v":{VERSION},"pid":{os.getpid()}{provider},"dropped":'

    def _start_lingerer(self) -> None:
        if self.linger_s and self.linger_s > 0:
            threading.Thread(target=self._linger, name="mlpack-agent-client", daemon=True).start()

    def _linger(self) -> None:
        while True:
            time.sleep(self.linger_s)
            if self._queue or self._drift_waiting():
                self.flush()

    def _drift_waiting(self) -> bool:
        waiting = getattr(self._drift, "waiting", None)
        try:
            return bool(waiting()) if waiting is not None else False
        except Exception:  # noqa: BLE001 - drift is best effort
            return False

    def _send_drift(self) -> None:
        """The counts of the last requests, which no event is left to carry (a quiet service)."""
        drift = self._take_drift()  # None until the source's interval has passed
        if drift:
            self._put_back(drift)  # put back marks it to go now: the send below takes it again
            self._send([])

    def _after_fork(self) -> None:
        # A forked worker inherits the queue but not the background thread.
        self._queue = collections.deque()
        self._flush_lock = threading.Lock()
        self._retry_at = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = self.dropped = 0
        self._set_prefix()
        self._start_lingerer()


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default
