"""Sampled capture of raw model inputs: off unless the service is started with
MLPACK_CAPTURE_RATE > 0 (docs/agent.md, "What stays private").

A sampled request's model inputs go, as JSON, to the telemetry agent in a datagram of
their own; the agent writes them to its capture folder, which it rotates under a size
cap (or refuses them when no folder is configured). A sample larger than
MLPACK_CAPTURE_MAX_BYTES is not sent (and counted in `skipped`). Without the variable
nothing of a request's data leaves the process: drift is reported as bin counts only.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Callable

RATE_ENV = "MLPACK_CAPTURE_RATE"
MAX_BYTES_ENV = "MLPACK_CAPTURE_MAX_BYTES"
DEFAULT_MAX_BYTES = 16_384
# A sample travels in one datagram (protocol.MAX_DATAGRAM_BYTES is 60,000).
LIMIT_BYTES = 50_000


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


class Capture:
    def __init__(self, rate: float, max_bytes: int, send: Callable[[str], None]) -> None:
        self.rate = rate
        self.max_bytes = max_bytes
        self.send = send
        self.sent = 0
        self.skipped = 0  # sampled, but larger than max_bytes

    @classmethod
    def from_env(cls, send: Callable[[str], None]) -> Capture | None:
        """The capture the environment asks for; None when it is off (the default) or the
        variables are not numbers in range."""
        try:
            rate = float(os.environ.get(RATE_ENV) or 0)
            max_bytes = int(os.environ.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES)
        except ValueError:
            return None
        if not 0 < rate <= 1 or max_bytes <= 0:
            return None
        return cls(rate, min(max_bytes, LIMIT_BYTES), send)

    def offer(self, inputs: dict[str, Any]) -> None:
        """Send these inputs with probability `rate`, if they fit the size cap."""
        if random.random() >= self.rate:
            return
        text = json.dumps({name: _plain(value) for name, value in inputs.items()}, separators=(",", ":"))
        if len(text.encode()) > self.max_bytes:
            self.skipped += 1
            return
        self.send(text)
        self.sent += 1
