"""The OTLP disk buffer: ordered, bounded (oldest dropped and counted), survives restarts."""

from __future__ import annotations

from pathlib import Path

from mlpack_agent.spool import Sender, Spool

from .agent_harness import OtlpReceiver, wait_for


def test_full_buffer_drops_the_oldest_and_counts_their_points(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    for i in range(5):
        spool.put("metrics", bytes([i]) * 100, points=10 + i)
    # 250 bytes hold two 100-byte batches: the three oldest went, with their points.
    assert spool.batches == 2 and spool.size_bytes == 200
    assert spool.dropped_batches == 3 and spool.dropped_points == 10 + 11 + 12
    entry, payload = spool.oldest()
    assert payload == bytes([3]) * 100 and entry.points == 13


def test_buffer_survives_an_agent_restart_in_order(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10_000)
    first.put("metrics", b"a", 1)
    first.put("logs", b"b", 2)
    (tmp_path / "junk.tmp").write_bytes(b"partial write")
    second = Spool(tmp_path, max_bytes=10_000)
    entry, payload = second.oldest()
    assert (entry.signal, payload) == ("metrics", b"a")
    second.done(entry, delivered=True)
    second.put("metrics", b"c", 3)
    order = []
    while (item := second.oldest()) is not None:
        order.append(item[1])
        second.done(item[0], delivered=True)
    assert order == [b"b", b"c"] and not (tmp_path / "junk.tmp").exists()


def test_sender_waits_for_the_collector_then_delivers_everything(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    spool = Spool(tmp_path, max_bytes=1 << 20)
    receiver = OtlpReceiver()  # not listening yet: connection refused
    sender = Sender(spool, receiver.endpoint, max_backoff_s=0.2)
    sender.start()
    try:
        for _ in range(3):
            spool.put("metrics", ExportMetricsServiceRequest().SerializeToString() or b"", 1)
        wait_for(lambda: sender.failures >= 2, 5, what="retries while the collector is away")
        assert spool.batches == 3
        receiver.start()
        wait_for(lambda: spool.batches == 0, 5, what="the buffer to drain")
        assert len(receiver.metrics) == 3 and spool.sent_batches == 3 and spool.dropped_points == 0
    finally:
        sender.stop()
        receiver.stop()
