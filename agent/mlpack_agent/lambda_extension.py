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

from .agent import Agent

log = logging.getLogger("mlpack_agent.lambda")

_API_VERSION = "2020-01-01"
# Lambda allows an external extension 2 s after SHUTDOWN; keep a margin.
SHUTDOWN_DEADLINE_S = 1.5


def run(agent: Agent, name: str = "mlpack-agent", runtime_api: str | None = None) -> None:
    """Register, serve events until SHUTDOWN, then stop the agent."""
    base = f"http://{runtime_api or os.environ['AWS_LAMBDA_RUNTIME_API']}/{_API_VERSION}/extension"
    request = urllib.request.Request(
        f"{base}/register", method="POST",
        data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
        headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        extension_id = response.headers["Lambda-Extension-Identifier"]
    log.info("registered as a Lambda extension", extra={"extension": name})
    while True:
        request = urllib.request.Request(f"{base}/event/next", headers={"Lambda-Extension-Identifier": extension_id})
        with urllib.request.urlopen(request) as response:  # blocks until the next event
            event = json.load(response)
        if event.get("eventType") == "SHUTDOWN":
            agent.stop(deadline_s=SHUTDOWN_DEADLINE_S)
            return
        agent.flush(timeout_s=0.5)
