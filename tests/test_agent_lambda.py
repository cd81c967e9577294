"""The agent as an AWS Lambda extension, against a local Extensions API.

The emulator speaks the Extensions API the way Lambda does (register, then a blocking
`event/next`); the test plays the runtime: it sends INVOKE events, reports events through
the client as a handler does (MLPACK_AGENT_BATCH=1), then SHUTDOWN. Everything reported
must reach the OTLP receiver before the agent exits, within Lambda's 2 s budget.
"""

from __future__ import annotations

import time
from pathlib import Path

from mlpack_agent.client import EventClient

from .agent_harness import AgentProcess, ExtensionsApi, OtlpReceiver, wait_for


def _invoke(client: EventClient, n: int) -> None:
    """One invocation's reports; the handler flushes before returning (and freezing)."""
    for i in range(n):
        client.inference(model_ms=2.0, total_ms=3.0, batch_size=1, input_bytes=256, ok=True, predicted=[i % 10])
    client.flush(timeout_s=0.5)
    assert not client._queue, "events left in the handler when the environment freezes"


def test_extension_delivers_every_event_by_shutdown(tmp_path: Path) -> None:
    api = ExtensionsApi()
    receiver = OtlpReceiver().start()
    agent = AgentProcess(
        tmp_path / "agent", args=["--lambda-extension", "mlpack-agent"],
        env={"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.port}"},
        prometheus={"enabled": False},
        # Only INVOKE and SHUTDOWN export: the periodic interval never fires in this test.
        otlp={"endpoint": receiver.endpoint, "interval_s": 3600},
    )
    try:
        agent.start()
        wait_for(api.waiting.is_set, 10, what="registration")
        assert api.registered == [{"name": "mlpack-agent", "events": ["INVOKE", "SHUTDOWN"]}]
        client = EventClient({"model_name": "test-model"}, socket_path=agent.socket, batch=1)

        api.send("INVOKE")
        _invoke(client, 40)
        api.send("INVOKE")  # the next invocation: the first one's data goes out now
        wait_for(lambda: receiver.points("mlpack.inference.requests"), 10, what="the first invocation's data")
        _invoke(client, 25)
        api.send("SHUTDOWN")
        started = time.monotonic()
        agent.proc.wait(5)
        shutdown_s = time.monotonic() - started
    finally:
        agent.stop()
        api.close()
        receiver.stop()
    assert agent.proc.returncode == 0
    assert shutdown_s < 2.0
    assert client.dropped == 0
    # Cumulative counter: the last point holds the total.
    assert max(p.as_int for p in receiver.points("mlpack.inference.requests")) == 65
