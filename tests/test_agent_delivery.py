"""Delivery under failure: a collector outage loses nothing, a dead agent costs only
counted events and never slows the sender down.

Events are sent with `EventClient`, the object the service's reporter wraps, from the
test process at a steady rate.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mlpack_agent.client import EventClient

from .agent_harness import AgentProcess, OtlpReceiver, wait_for

LABELS = {"model_name": "test-model", "target": "x86-cpu"}


class SteadySender(threading.Thread):
    """Reports `rate` events per second until stopped; records the slowest call."""

    def __init__(self, client: EventClient, rate: float, errors_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.client, self.interval, self.errors_every = client, 1.0 / rate, errors_every
        self.count = 0
        self.slowest_call_s = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            failed = bool(self.errors_every) and self.count % self.errors_every == 0
            t0 = time.perf_counter()
            self.client.inference(model_ms=1.5, total_ms=2.5, batch_size=1, input_bytes=256, ok=not failed,
                                  error_kind="invalid_input" if failed else None, predicted=[self.count % 10])
            self.slowest_call_s = max(self.slowest_call_s, time.perf_counter() - t0)
            self.count += 1
            next_at += self.interval
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def finish(self) -> int:
        self._stop_event.set()
        self.join()
        self.client.flush()
        return self.count


@pytest.mark.slow
def test_collector_outage_of_30_s_loses_no_data_point(tmp_path: Path) -> None:
    receiver = OtlpReceiver().start()
    agent = AgentProcess(
        tmp_path / "agent",
        otlp={"endpoint": receiver.endpoint, "interval_s": 1, "temporality": "delta", "max_backoff_s": 2},
    ).start()
    client = EventClient(LABELS, socket_path=agent.socket)
    sender = SteadySender(client, rate=200, errors_every=50)
    try:
        sender.start()
        wait_for(lambda: receiver.sum_of("mlpack.inference.requests") > 0, 15, what="first OTLP export")
        receiver.stop()
        outage_started = time.time_ns()
        time.sleep(30)
        buffered = agent.value("mlpack_agent_buffer_size_bytes")
        outage_ended = time.time_ns()
        receiver.start()
        time.sleep(3)
        total = sender.finish()
        wait_for(lambda: receiver.sum_of("mlpack.inference.requests") >= total, 30, interval_s=0.2,
                 what="the buffered data to arrive")
        time.sleep(2)  # anything extra (a duplicate) would arrive now
    finally:
        sender._stop_event.set()
        agent.stop()
        receiver.stop()
    assert agent.proc.returncode == 0, "the agent should stop cleanly on SIGTERM"
    assert client.dropped == 0 and client.sent == total
    assert buffered > 0, "the agent should have buffered on disk during the outage"
    # Delta points: each export counted once. Equal sums mean none lost, none duplicated.
    assert receiver.sum_of("mlpack.inference.requests") == total
    assert receiver.sum_of("mlpack.inference.errors") == len(range(0, total, 50))
    assert sum(p.count for p in receiver.points("mlpack.inference.duration")) == total
    # Points collected during the outage arrived late, with their original timestamps.
    during = [p for p in receiver.points("mlpack.inference.requests")
              if outage_started < p.time_unix_nano < outage_ended]
    assert len(during) >= 25
    assert agent_dropped_nothing(agent, tmp_path)
    # Structured logs travel the same way: the per-kind error log carries its attributes.
    records = [r for req in receiver.logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    error_logs = [r for r in records if r.body.string_value == "inference errors"]
    assert error_logs and all(
        any(a.key == "error.kind" and a.value.string_value == "invalid_input" for a in r.attributes)
        for r in error_logs
    )


def agent_dropped_nothing(agent: AgentProcess, tmp_path: Path) -> bool:
    log = (tmp_path / "agent" / "agent.log").read_text()
    return "dropped the oldest batch" not in log and "rejected a batch" not in log


def test_killed_agent_costs_only_counted_events(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path / "agent").start()
    client = EventClient(LABELS, socket_path=agent.socket, batch=16)
    try:
        before = SteadySender(client, rate=1000)
        before.start()
        time.sleep(1.0)
        sent_before = before.finish()
        wait_for(lambda: agent.value("mlpack_inference_requests_total") == sent_before, 10,
                 what="the agent to count the first events")

        agent.kill()
        during = SteadySender(client, rate=1000)
        during.start()
        time.sleep(1.0)
        sent_during = during.finish()
        # The sender never waited on the dead agent, and knows exactly what it lost.
        assert during.slowest_call_s < 0.05
        assert client.dropped == sent_during

        agent.start()
        after = SteadySender(client, rate=1000)
        after.start()
        time.sleep(1.0)
        sent_after = after.finish()
        wait_for(lambda: agent.value("mlpack_inference_requests_total") == sent_after, 10,
                 what="the restarted agent to count new events")
        assert client.dropped == sent_during
        assert client.sent == sent_before + sent_after
        # The client reports its losses, so the agent exports them for the alert rules.
        assert agent.value("mlpack_agent_client_dropped_total") == sent_during
    finally:
        agent.stop()


@pytest.mark.slow
def test_a_full_buffer_drops_the_oldest_data_and_counts_it(tmp_path: Path) -> None:
    receiver = OtlpReceiver()  # the collector is away from the start
    agent = AgentProcess(
        tmp_path / "agent", buffer={"max_bytes": 12_000},
        otlp={"endpoint": receiver.endpoint, "interval_s": 0.5, "temporality": "delta", "max_backoff_s": 0.5},
    ).start()
    client = EventClient(LABELS, socket_path=agent.socket)
    sender = SteadySender(client, rate=200)
    try:
        sender.start()
        wait_for(lambda: agent.value("mlpack_agent_buffer_dropped_total") > 0, 30, interval_s=0.25,
                 what="the buffer to reach its cap")
        assert agent.value("mlpack_agent_buffer_size_bytes") <= 12_000
        receiver.start()
        total = sender.finish()
        wait_for(lambda: agent.value("mlpack_agent_buffer_size_bytes") == 0
                 and receiver.sum_of("mlpack.inference.requests") > 0, 20, interval_s=0.25,
                 what="the buffer to drain")
        time.sleep(1.5)  # the last delta export
        dropped_points = agent.value("mlpack_agent_buffer_dropped_total")
    finally:
        sender._stop_event.set()
        agent.stop()
        receiver.stop()
    delivered = receiver.sum_of("mlpack.inference.requests")
    assert client.dropped == 0
    # The oldest exports are gone (and counted); everything after them arrived: the delta
    # points that did arrive form one unbroken run of intervals up to the last export.
    assert dropped_points > 0 and 0 < delivered < total
    points = sorted(receiver.points("mlpack.inference.requests"), key=lambda p: p.start_time_unix_nano)
    assert all(b.start_time_unix_nano == a.time_unix_nano for a, b in zip(points, points[1:]))
