"""The wire format between the service's client and the agent (standard library only).

One Unix datagram carries a batch of events as compact JSON:

    {"v": 1, "pid": 123, "dropped": 0, "execution_provider": "CPUExecutionProvider", "events": [[...], ...]}

Each event is a positional list, in the order of `EVENT_FIELDS`. `dropped` is the
sender's running count of events it could not deliver, so the agent can export it.
`execution_provider` (optional) names the onnxruntime execution provider the service's
session really runs on. Older clients also sent `labels`; the agent never reads them
(it labels what it exports from its own configuration).
"""

from __future__ import annotations

import os

VERSION = 1
# A folder of its own (mode 0700, made by the agent), not /tmp itself: see trust.py.
DEFAULT_SOCKET = "/tmp/mlpack-agent/agent.sock"
SOCKET_ENV = "MLPACK_AGENT_SOCKET"

EVENT_FIELDS = (
    "model_ms", "total_ms", "batch_size", "input_bytes", "ok", "error_kind", "predicted",
    "output_norm",
)
# onnxruntime's provider names: CPUExecutionProvider, CUDAExecutionProvider, ...
EXECUTION_PROVIDER_PATTERN = r"[A-Za-z]{1,40}ExecutionProvider"

# Unix datagrams are limited by the sender's buffer (net.core.wmem_default, ~208 KiB);
# staying far below it keeps every send a single cheap copy.
MAX_DATAGRAM_BYTES = 60_000


def socket_path() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
