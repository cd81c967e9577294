"""Delivery under failure, counted end to end through a real OTLP receiver: a collector
outage (10 s here, 60 s under `python -m benchmarks.fault_table --run`) and a kill -9 of
the agent during an outage lose no data point; a full buffer (its cap, or the disk
itself) drops the oldest and counts every point it drops; a corrupt buffer file is
skipped with a log line; a dead agent costs the service only counted events and never
slows it down.

Events are sent with `EventClient`, the object the service's reporter wraps, from the
test process at a steady rate. Each fault test records its result for docs/reliability.md
(tests/faults.py).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from mlpack_agent.client import EventClient

from .agent_harness import AgentProcess, OtlpReceiver, wait_for
from .faults import NEEDS_TMPFS, mount_tmpfs, nodeid, record_fault, unmount

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


# The outage's length: 60 s for the fault table (benchmarks.fault_table --run sets it), 10 s
# in the suite: ten exports buffered and delivered late are the same path as sixty.
OUTAGE_S = float(os.environ.get("MLPACK_FAULT_OUTAGE_S", "10"))


def exporting(workdir: Path, max_backoff_s: float,
              errors_every: int = 0) -> tuple[OtlpReceiver, AgentProcess, EventClient, SteadySender]:
    """An agent exporting every second (delta) to a receiver, a service reporting 200
    inferences/s to it, and the first export arrived."""
    receiver = OtlpReceiver().start()
    agent = AgentProcess(workdir, otlp={"endpoint": receiver.endpoint, "interval_s": 1, "temporality": "delta",
                                        "max_backoff_s": max_backoff_s}).start()
    client = EventClient(LABELS, socket_path=agent.socket)
    sender = SteadySender(client, rate=200, errors_every=errors_every)
    sender.start()
    try:
        wait_for(lambda: receiver.sum_of("mlpack.inference.requests") > 0, 15, what="first OTLP export")
    except TimeoutError:
        sender._stop_event.set()
        agent.stop()
        receiver.stop()
        raise
    return receiver, agent, client, sender


@pytest.mark.slow
def test_a_collector_outage_loses_no_data_point(tmp_path: Path) -> None:
    receiver, agent, client, sender = exporting(tmp_path / "agent", max_backoff_s=2, errors_every=50)
    try:
        receiver.stop()
        outage_started = time.time_ns()
        time.sleep(OUTAGE_S)
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
    assert len(during) >= OUTAGE_S - 5
    assert agent_dropped_nothing(agent, tmp_path)
    # Structured logs travel the same way: the per-kind error log carries its attributes.
    records = [r for req in receiver.logs for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    error_logs = [r for r in records if r.body.string_value == "inference errors"]
    assert error_logs and all(
        any(a.key == "error.kind" and a.value.string_value == "invalid_input" for a in r.attributes)
        for r in error_logs
    )
    received = receiver.sum_of("mlpack.inference.requests")
    record_fault("collector-outage", nodeid(),
                 f"the OTLP receiver stopped (connection refused) for {OUTAGE_S:.0f} s while a service reported 200 "
                 "inferences/s; the agent exports every 1 s",
                 f"mlpack_agent_buffer_size_bytes rose to {buffered:.0f} during the outage and fell to 0 after",
                 lost=total - received,
                 detail=f"{total} inferences reported, {received:.0f} counted by the receiver, none twice")


def agent_dropped_nothing(agent: AgentProcess, tmp_path: Path) -> bool:
    log = (tmp_path / "agent" / "agent.log").read_text()
    return "dropped the oldest batch" not in log and "rejected a batch" not in log


@pytest.mark.slow
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
        # The sender never waits on the dead agent (its socket does not block: a send to no
        # one fails at once), and knows exactly what it lost.
        assert client._sock.getblocking() is False
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


def received_points(receiver: OtlpReceiver) -> int:
    """Every metric data point the receiver decoded (all metrics, all requests)."""
    return sum(len(getattr(m, m.WhichOneof("data")).data_points)
               for req in receiver.metrics for rm in req.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics)


BOOKS = re.compile(r"agent stopped: (\d+) points found in the OTLP buffer at start, (\d+) exported into it, "
                   r"(\d+) sent, (\d+) dropped \((\d+) corrupt files\), (\d+) still buffered")


def books(agent: AgentProcess) -> list[dict[str, int]]:
    """The agent's account of its data points, one per run (printed when it stops)."""
    keys = ("inherited", "exported", "sent", "dropped", "corrupt", "buffered")
    text = (agent.workdir / "agent.log").read_text()
    return [dict(zip(keys, map(int, m.groups()))) for m in BOOKS.finditer(text)]


def unaccounted(run: dict[str, int]) -> int:
    """Points that neither arrived, nor were counted as dropped, nor wait in the buffer."""
    return run["inherited"] + run["exported"] - run["sent"] - run["dropped"] - run["buffered"]


def overflow(workdir: Path, buffer: dict, interval_s: float) -> tuple[AgentProcess, OtlpReceiver, int]:
    """Steady traffic with the collector away until the agent drops buffered data, then the
    collector back until the buffer is empty; returns the stopped agent, the receiver and
    the number of inferences reported."""
    receiver = OtlpReceiver()  # the collector is away from the start
    agent = AgentProcess(workdir, buffer=buffer, otlp={
        "endpoint": receiver.endpoint, "interval_s": interval_s, "temporality": "delta", "max_backoff_s": 0.5,
        "logs": False}).start()
    client = EventClient(LABELS, socket_path=agent.socket)
    sender = SteadySender(client, rate=200)
    try:
        sender.start()
        wait_for(lambda: agent.value("mlpack_agent_buffer_dropped_total") > 0, 60, interval_s=0.25,
                 what="the buffer to drop data")
        time.sleep(1.0)  # it stays full for a while
        assert agent.proc.poll() is None, "the agent keeps running with a full buffer"
        assert agent.value("mlpack_agent_buffer_size_bytes") <= buffer.get("max_bytes", 1 << 30)
        receiver.start()
        total = sender.finish()
        wait_for(lambda: agent.value("mlpack_agent_buffer_size_bytes") == 0
                 and receiver.sum_of("mlpack.inference.requests") > 0, 30, interval_s=0.25,
                 what="the buffer to drain")
        time.sleep(1.5)  # the last delta export
    finally:
        sender._stop_event.set()
        agent.stop()
        receiver.stop()
    assert client.dropped == 0
    return agent, receiver, total


def assert_dropped_and_counted(agent: AgentProcess, receiver: OtlpReceiver, total: int,
                               unbroken: bool = True) -> dict[str, int]:
    """Exports were dropped, and counted; every point is accounted for: the receiver got
    exactly what the agent sent. `unbroken`: only the oldest went, the delta points that
    did arrive form one unbroken run of intervals up to the last export."""
    [run] = books(agent)
    assert run["dropped"] > 0 and 0 < receiver.sum_of("mlpack.inference.requests") < total
    if unbroken:
        points = sorted(receiver.points("mlpack.inference.requests"), key=lambda p: p.start_time_unix_nano)
        assert all(b.start_time_unix_nano == a.time_unix_nano for a, b in zip(points, points[1:]))
    assert received_points(receiver) == run["sent"]
    assert unaccounted(run) == 0 and run["buffered"] == 0
    return run


def record_overflow(fault_id: str, injected: str, agent: AgentProcess, run: dict[str, int], marker: str) -> None:
    line = next(li for li in (agent.workdir / "agent.log").read_text().splitlines() if marker in li)
    record_fault(fault_id, nodeid(), injected,
                 line.split(": ", 1)[-1] + f"; mlpack_agent_buffer_dropped_total = {run['dropped']}",
                 lost=unaccounted(run),
                 detail=f"{run['exported']} points exported, {run['sent']} received, {run['dropped']} dropped "
                        "(the oldest) and counted")


@pytest.mark.slow
def test_a_full_buffer_drops_the_oldest_data_and_counts_it(tmp_path: Path) -> None:
    agent, receiver, total = overflow(tmp_path / "agent", {"max_bytes": 12_000}, interval_s=0.5)
    run = assert_dropped_and_counted(agent, receiver, total)
    record_overflow("buffer-cap", "the collector away from the start, 200 inferences/s, exports every 0.5 s, "
                    "buffer.max_bytes 12,000", agent, run, "OTLP buffer full: dropped the oldest")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 160 KiB tmpfs: a disk that fills up in seconds."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mount_tmpfs(mount, 160 * 1024)
    try:
        yield mount
    finally:
        unmount(mount)


@pytest.mark.slow
@pytest.mark.requires_tool("tmpfs", **NEEDS_TMPFS)
def test_a_full_disk_drops_the_oldest_data_counts_it_and_the_agent_keeps_running(
    tmp_path: Path, small_disk: Path
) -> None:
    # The cap (64 MiB) is never reached: the disk is full first. The oldest exports go first,
    # but the journal shares the disk: once nothing is left to drop, a new export that does
    # not fit is lost too (and counted), so the run of intervals that arrives may have a gap.
    agent, receiver, total = overflow(tmp_path / "agent", {"dir": str(small_disk / "buffer")}, interval_s=0.25)
    assert "disk full: dropped the oldest batch" in (agent.workdir / "agent.log").read_text()
    run = assert_dropped_and_counted(agent, receiver, total, unbroken=False)
    record_overflow("disk-full", "the agent's buffer folder on a 160 KiB tmpfs, the collector away, "
                    "200 inferences/s", agent, run, "disk full: dropped the oldest batch")


@pytest.mark.slow
def test_kill_9_during_an_outage_loses_no_data_point(tmp_path: Path) -> None:
    receiver, agent, client, sender = exporting(tmp_path / "agent", max_backoff_s=0.5)
    try:
        receiver.stop()
        time.sleep(3.3)  # three exports in the buffer, and events since the last only in the journal
        journal = agent.workdir / "buffer" / "journal"
        wait_for(lambda: any(f.stat().st_size for f in journal.glob("*.events")), 5, interval_s=0.01,
                 what="events in the journal")
        spooled = len(list((agent.workdir / "buffer").glob("*.pb")))
        agent.kill()  # SIGKILL: no shutdown, no last export
        time.sleep(0.5)  # the service meanwhile: its reports fail and are counted (client.dropped)
        agent.start()
        time.sleep(1.5)
        receiver.start()
        time.sleep(1.0)
        sender.finish()
        # A bound on the wait, not a timing check (the count is): a loaded fresh-clone run (every
        # file a third slower) ran past 30 s once.
        wait_for(lambda: receiver.sum_of("mlpack.inference.requests") >= client.sent, 90, interval_s=0.2,
                 what="everything to arrive", state=lambda: (
                     f"{receiver.sum_of('mlpack.inference.requests'):.0f} of {client.sent} arrived; the agent's "
                     f"log ends: {(agent.workdir / 'agent.log').read_text()[-1500:]}"))
        time.sleep(2)  # a duplicate would arrive now
    finally:
        sender._stop_event.set()
        agent.stop()
        receiver.stop()
    log = (agent.workdir / "agent.log").read_text()
    assert spooled >= 2
    assert "replayed the event journal of the previous run" in log  # the kill did catch events in memory
    # Every event the agent took from its socket arrived, once. (Those sent while it was
    # dead never reached it: the service counted them, and the agent exports that count.)
    received = receiver.sum_of("mlpack.inference.requests")
    assert client.dropped > 0
    assert received == client.sent
    assert sum(p.count for p in receiver.points("mlpack.inference.duration")) == client.sent
    record_fault("agent-kill-9", nodeid(),
                 "SIGKILL of the agent 3.3 s into a collector outage (200 inferences/s, exports every 1 s), "
                 "agent restarted 0.5 s later, collector back 1.5 s after that",
                 next(li for li in log.splitlines() if "replayed the event journal" in li).split(": ", 1)[-1],
                 lost=client.sent - received,
                 detail=f"{client.sent} inferences handed to the agent, {received:.0f} counted by the receiver; "
                        f"{client.dropped} reported while it was dead were counted by the service "
                        "(mlpack_agent_client_dropped_total)")


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_corrupt_buffer_files_are_skipped_with_a_log_line(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from mlpack_agent.journal import _HEADER

    receiver = OtlpReceiver()  # away: the first run only fills the buffer
    otlp = {"endpoint": receiver.endpoint, "interval_s": 0.3, "temporality": "delta", "max_backoff_s": 0.3,
            "logs": False}
    agent = AgentProcess(tmp_path / "agent", otlp=otlp).start()
    client = EventClient(LABELS, socket_path=agent.socket)
    buffer = agent.workdir / "buffer"
    try:
        for _ in range(3):  # in three exports
            for _ in range(100):
                client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=64, ok=True)
            client.flush()
            time.sleep(0.7)
        wait_for(lambda: len(list(buffer.glob("*.pb"))) >= 3, 15, what="three exports in the buffer")
    finally:
        agent.stop()
    # Damage what a power cut or a bad sector could: one export (its points known from the
    # file before the damage), the tail of a journal segment; add things that are no batch.
    files = sorted(buffer.glob("*.pb"))
    victim = next(f for f in files if ExportMetricsServiceRequest.FromString(f.read_bytes()).resource_metrics
                  and any(m.name == "mlpack.inference.requests" for rm in
                          ExportMetricsServiceRequest.FromString(f.read_bytes()).resource_metrics
                          for sm in rm.scope_metrics for m in sm.metrics))
    lost_requests = sum(p.as_int for rm in ExportMetricsServiceRequest.FromString(victim.read_bytes()).resource_metrics
                        for sm in rm.scope_metrics for m in sm.metrics if m.name == "mlpack.inference.requests"
                        for p in m.sum.data_points)
    victim_points = int(victim.name.split(".")[2])
    _corrupt(victim)
    datagram = json.dumps({"v": 1, "pid": 1, "dropped": 0, "labels": LABELS,
                           "events": [[1.0, 2.0, 1, 64, True, None, None, None]] * 5}).encode()
    import zlib

    (buffer / "journal" / f"{99:016d}.events").write_bytes(
        _HEADER.pack(len(datagram), zlib.crc32(datagram)) + datagram + b"\x07torn")
    (buffer / "junk.pb").mkdir()
    (buffer / f"{10**9:016d}.traces.3.-.00000000.pb").write_bytes(b"x")

    receiver.start()
    try:
        agent.start()  # the same agent again, on the damaged buffer
        wait_for(lambda: not list(buffer.glob("0*.pb")), 15, what="the buffer to drain")
        time.sleep(1.0)
        assert agent.proc.poll() is None, "the agent runs on: no crash loop"
    finally:
        agent.stop()
        receiver.stop()
    log = (agent.workdir / "agent.log").read_text()
    assert "corrupt file in the OTLP buffer skipped" in log
    assert re.search(r"journal segment \d+ ends in a record cut short", log)
    assert "skipped a file in the OTLP buffer that is not one of its batches" in log
    # Exactly the damaged export is missing: 300 events, less those it held, plus the 5
    # the journal's intact record held.
    assert 0 < lost_requests < 300
    assert receiver.sum_of("mlpack.inference.requests") == 300 - lost_requests + 5
    run = books(agent)[-1]
    assert run["corrupt"] == 1 and run["dropped"] == victim_points and unaccounted(run) == 0
    line = next(li for li in log.splitlines() if "corrupt file in the OTLP buffer" in li)
    record_fault("corrupt-buffer-file", nodeid(),
                 "bytes of one buffered export flipped, a journal segment with a torn tail, a folder and a file "
                 "of an unknown signal among the buffer files; then the agent started",
                 line.split(": ", 1)[-1] + f"; mlpack_agent_buffer_dropped_total = {run['dropped']}",
                 lost=unaccounted(run),
                 detail=f"the damaged export's {victim_points} points dropped and counted; everything else "
                        f"delivered ({receiver.sum_of('mlpack.inference.requests'):.0f} of 300 + 5 events)")
