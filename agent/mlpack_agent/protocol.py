"""The wire format between the service's client and the agent (standard library only).

One Unix datagram carries a batch of events as compact JSON:

    {"v": 1, "pid": 123, "dropped": 0, "labels": {...}, "events": [[...], ...]}

Each event is a positional list, in the order of `EVENT_FIELDS`. `dropped` is the
sender's running count of events it could not deliver, so the agent can export it.
"""

from __future__ import annotations

import os

VERSION = 1
DEFAULT_SOCKET = "/tmp/mlpack-agent.sock"
SOCKET_ENV = "MLPACK_AGENT_SOCKET"

EVENT_FIELDS = (
    "model_ms", "total_ms", "batch_size", "input_bytes", "ok", "error_kind", "predicted",
    "output_norm",
)

# Unix datagrams are limited by the sender's buffer (net.core.wmem_default, ~208 KiB);
# staying far below it keeps every send a single cheap copy.
MAX_DATAGRAM_BYTES = 60_000


def socket_path() -> str:
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
