"""Run the agent as an AWS Lambda extension (the Lambda Extensions API).

Lambda starts every executable in /opt/extensions/ beside the function; this one
registers for INVOKE and SHUTDOWN, then waits for events:

- INVOKE (an invocation begins): export what earlier invocations reported into the disk
  buffer, so the sender ships it while the function works, never after the response.
- SHUTDOWN: record what is left, export, and push within Lambda's 2 s budget; whatever
  the collector did not take stays in /tmp for the next start of this environment.

The handler reports with `MLPACK_AGENT_BATCH=1` (or calls `client.flush()` at the end of
each invocation) so that no event waits in the handler while the environment is frozen.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("mlpack_agent.lambda")

_API_VERSION = "2020-01-01"
# Lambda allows an external extension 2 s after SHUTDOWN; keep a margin.
SHUTDOWN_DEADLINE_S = 1.5


def register(name: str = "mlpack-agent", runtime_api: str | None = None) -> tuple[str, str]:
    """Register with Lambda (standard library only, before OpenTelemetry is imported, so
    that the registration step of the Init phase is as short as possible)."""
    base = f"http://{runtime_api or os.environ['AWS_LAMBDA_RUNTIME_API']}/{_API_VERSION}/extension"
    request = urllib.request.Request(
        f"{base}/register", method="POST",
        data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
        headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return base, response.headers["Lambda-Extension-Identifier"]


def serve(agent: "Agent", base: str, extension_id: str) -> None:
    """Wait for events until SHUTDOWN, then stop the agent within Lambda's budget."""
    log.info("serving as a Lambda extension")
    while True:
        request = urllib.request.Request(f"{base}/event/next", headers={"Lambda-Extension-Identifier": extension_id})
        with urllib.request.urlopen(request) as response:  # blocks until the next event
            event = json.load(response)
        if event.get("eventType") == "SHUTDOWN":
            agent.stop(deadline_s=SHUTDOWN_DEADLINE_S)
            return
        agent.flush(timeout_s=0.5)
