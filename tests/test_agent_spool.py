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


def test_the_batch_in_flight_pushed_out_by_a_full_buffer_counts_as_sent_if_the_collector_took_it(
    tmp_path: Path,
) -> None:
    # The collector comes back while the buffer is full: the sender posts the oldest batch and,
    # before the answer, a new export pushes that batch's file out. It arrived, so it is sent,
    # never also dropped (CI once saw 28 points more at the receiver than the agent's books).
    spool = Spool(tmp_path, max_bytes=250)
    spool.put("metrics", b"a" * 100, points=3)
    spool.put("metrics", b"b" * 100, points=4)
    entry, _ = spool.oldest()  # the sender's post of "a" is under way
    spool.put("metrics", b"c" * 100, points=5)
    assert spool.batches == 2 and spool.dropped_points == 0  # its file went; it is not counted yet
    spool.done(entry, delivered=True)
    assert (spool.sent_points, spool.dropped_points, spool.buffered_points) == (3, 0, 9)
    assert spool.oldest()[1] == b"b" * 100  # "b" is next, not lost to the one that went


def test_the_batch_in_flight_pushed_out_by_a_full_buffer_counts_as_dropped_if_its_send_fails(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=150)
    spool.put("metrics", b"a" * 100, points=3)
    entry, _ = spool.oldest()
    spool.put("metrics", b"b" * 100, points=4)
    spool.retry(entry)  # the collector did not answer, and the file is gone: "a" is lost
    assert (spool.sent_points, spool.dropped_points, spool.dropped_batches) == (0, 3, 1)
    assert spool.oldest()[1] == b"b" * 100
    books = spool.books()
    assert "7 exported into it, 0 sent, 3 dropped (0 corrupt files), 4 still buffered" in books


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


def test_a_corrupt_file_is_skipped_logged_and_counted(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    for i in range(3):
        spool.put("metrics", bytes([i]) * 50, points=10 + i)
    middle = sorted(tmp_path.glob("*.pb"))[1]
    middle.write_bytes(b"\x00" * 50)  # same size, other bytes: only the CRC-32 tells
    survivor = Spool(tmp_path, max_bytes=10_000)
    sent = []
    while (item := survivor.oldest()) is not None:
        sent.append(item[1])
        survivor.done(item[0], delivered=True)
    assert sent == [bytes([0]) * 50, bytes([2]) * 50]
    assert survivor.corrupt_batches == 1 and survivor.dropped_points == 11
    assert "corrupt file in the OTLP buffer skipped (11 points" in caplog.text


def test_things_in_the_buffer_folder_that_are_no_batch_never_stop_it(tmp_path: Path) -> None:
    (tmp_path / "0000000000000001.metrics.5.pb").mkdir()  # a folder with a batch's name
    (tmp_path / "0000000000000002.traces.1.-.00000000.pb").write_bytes(b"x")  # a signal it does not send
    (tmp_path / "notes.pb").write_bytes(b"x")
    spool = Spool(tmp_path, max_bytes=10_000)
    assert spool.batches == 0 and spool.oldest() is None
    spool.put("logs", b"ok", 1)
    assert spool.oldest()[1] == b"ok"


def test_a_full_disk_drops_the_oldest_until_the_new_batch_fits(tmp_path: Path, monkeypatch) -> None:
    import errno

    from mlpack_agent import spool as spool_module

    spool = Spool(tmp_path, max_bytes=1 << 20)
    for i in range(3):
        spool.put("metrics", bytes([i]) * 100, points=1)
    real_write = spool_module._write_durably
    room = {"bytes": 250}  # a disk with room for two more batches and a marker, no more

    def write(path, payload):
        used = sum(p.stat().st_size for p in tmp_path.glob("*.pb"))
        if used + len(payload) > room["bytes"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, payload)

    monkeypatch.setattr(spool_module, "_write_durably", write)
    spool.put("metrics", b"n" * 100, points=7)
    assert spool.dropped_batches == 2 and spool.batches == 2
    assert [p.read_bytes()[:1] for p in sorted(tmp_path.glob("*.pb"))] == [bytes([2]), b"n"]


def test_the_journal_replays_what_no_export_holds_and_stops_at_a_torn_record(tmp_path: Path) -> None:
    from mlpack_agent.journal import Journal

    journal = Journal(tmp_path, covered=-1)
    with journal.lock:
        journal.append(b"one")
        sealed = journal.rotate()
        journal.append(b"two")
        journal.append(b"three")
    journal.close()
    # An export held segment `sealed`: only the later events come back, in order.
    again = Journal(tmp_path, covered=sealed)
    assert list(again.replay()) == [b"two", b"three"]
    again.close()
    # A power cut tore the last record: the ones before it still come back.
    segment = [p for p in sorted(tmp_path.glob("*.events")) if p.stat().st_size][0]
    segment.write_bytes(segment.read_bytes()[:-2])
    torn = Journal(tmp_path, covered=sealed)
    assert list(torn.replay()) == [b"two"]
    torn.close()


def test_the_spool_remembers_which_journal_segments_its_exports_held(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.put("metrics", b"a", 1, covers=4)
    entry, _ = spool.oldest()
    spool.done(entry, delivered=True)  # sent and gone, yet a restart must not replay segment 4
    assert Spool(tmp_path, max_bytes=10_000).covered == 4


def test_an_export_larger_than_the_whole_buffer_is_dropped_and_counted_never_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    spool.put("metrics", b"k" * 100, points=1)
    spool.put("metrics", b"x" * 251, points=7)
    # The older batch stays: dropping it would not have made room.
    assert spool.batches == 1 and spool.size_bytes == 100
    assert spool.dropped_points == 7 and spool.exported_points == 8
    assert sum(p.stat().st_size for p in tmp_path.glob("*.pb")) == 100


def test_the_journal_stays_under_its_cap_and_resumes_once_an_export_frees_it(tmp_path: Path) -> None:
    from mlpack_agent.journal import _HEADER, Journal

    record = b"e" * 92  # 100 bytes on disk with its header
    journal = Journal(tmp_path, covered=-1, max_bytes=400)
    assert journal.max_segment_bytes == 200  # sealed (an early export asked for) at half the cap
    with journal.lock:
        for _ in range(2):
            journal.append(record)
        assert journal.full
        sealed = journal.rotate()
        for _ in range(3):  # the export cannot free the first segment: the cap holds
            journal.append(record)
    assert journal.total_bytes == 400 == sum(p.stat().st_size for p in tmp_path.glob("*.events"))
    assert journal.over_cap == 1 and len(record) + _HEADER.size == 100
    journal.release(sealed)  # an export holds it now
    with journal.lock:
        journal.append(record)
    assert journal.total_bytes == 300 and journal.over_cap == 1
    journal.close()


def test_the_buffer_folders_are_made_private(tmp_path: Path) -> None:
    import stat

    spool = Spool(tmp_path / "state" / "buffer", max_bytes=10_000)
    for folder in (spool.dir, spool.dir.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
