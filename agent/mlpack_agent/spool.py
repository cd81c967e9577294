"""A bounded on-disk queue of OTLP requests, and the thread that ships it in order.

Every export (metrics or logs) is serialized to OTLP protobuf and written as one file
before anything is sent, so a collector outage (or an agent restart) loses nothing:
the sender retries the oldest file with backoff until the collector answers, then
catches up. Each file is fsynced, renamed into place and its folder fsynced before the
sender can see it, so a power cut leaves a file complete or absent.

When the folder would exceed `max_bytes`, or the disk itself is full, the oldest files go
first and the data points they held are counted in `dropped_points`; an export larger
than `max_bytes` on its own is never written, and counted the same way. The batch the
sender has in flight may go too (its file frees the room), but it is counted only once
its send ends: sent if the collector took it, dropped if not. A file whose
content no longer matches the CRC-32 in its name (a torn write, a bad sector) is
skipped with a log line and counted the same way: it never stops the sender.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from .folders import private_dir

log = logging.getLogger("mlpack_agent.spool")

SIGNAL_PATHS = {"metrics": "/v1/metrics", "logs": "/v1/logs"}
# Answers that mean "try again later" (OTLP/HTTP spec); any other 4xx will never succeed.
_RETRYABLE = {408, 429, 502, 503, 504}
# The highest journal segment whose events an export in this folder holds (see journal.py).
_COVERED = "covered"


@dataclass(frozen=True, order=True)
class Entry:
    seq: int
    signal: str
    points: int
    size: int
    crc: int | None = None  # CRC-32 of the payload; None for files of older agents
    covers: int | None = None  # the journal segment this export holds the events of

    @property
    def name(self) -> str:
        covers = "-" if self.covers is None else str(self.covers)
        return f"{self.seq:016d}.{self.signal}.{self.points}.{covers}.{self.crc or 0:08x}.pb"

    @classmethod
    def parse(cls, name: str, size: int) -> "Entry":
        """`<seq>.<signal>.<points>.<covers>.<crc>.pb`, or the older `<seq>.<signal>.<points>.pb`."""
        parts = name.split(".")
        if len(parts) == 4:
            seq, signal, points, _ = parts
            return cls(int(seq), signal, int(points), size)
        seq, signal, points, covers, crc, _ = parts  # ValueError for any other shape
        return cls(int(seq), signal, int(points), size, int(crc, 16), None if covers == "-" else int(covers))


class Spool:
    """Files named after their sequence number, which keeps send order."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = private_dir(directory)
        self.max_bytes = max_bytes
        self.dropped_points = 0
        self.dropped_batches = 0
        self.corrupt_batches = 0
        self.written_batches = 0
        self.sent_batches = 0
        # Data points in, out and lost, for the books the agent prints when it stops:
        # inherited (left by an earlier run) + exported = sent + dropped + still buffered.
        self.exported_points = 0
        self.sent_points = 0
        self._lock = threading.Lock()
        self._in_flight: Entry | None = None  # what `oldest` last handed the sender
        self._evicted: Entry | None = None  # that batch, its file removed while it was being sent
        self._entries: list[Entry] = sorted(self._scan())  # what an earlier run left behind
        self._seq = self._entries[-1].seq + 1 if self._entries else 0
        self.size_bytes = sum(e.size for e in self._entries)
        self.inherited_points = sum(e.points for e in self._entries)
        self.covered = max([self._read_covered(), *(e.covers for e in self._entries if e.covers is not None)])
        self.has_data = threading.Event()
        if self._entries:
            self.has_data.set()

    def _scan(self):
        for path in self.dir.glob("*.tmp"):  # a write cut short by a crash: never renamed
            _remove(path)
        for path in self.dir.glob("*.pb"):
            try:
                if not path.is_file():
                    raise ValueError("not a file")
                entry = Entry.parse(path.name, path.stat().st_size)
                if entry.signal not in SIGNAL_PATHS:
                    raise ValueError(f"unknown signal {entry.signal!r}")
                yield entry
            except (ValueError, OSError) as exc:
                log.warning("skipped a file in the OTLP buffer that is not one of its batches: %s (%s)",
                            path.name, exc, extra={"file": path.name, "reason": str(exc)})
                _remove(path)

    def _read_covered(self) -> int:
        try:
            return int((self.dir / _COVERED).read_text())
        except (OSError, ValueError):
            return -1

    def put(self, signal: str, payload: bytes, points: int, covers: int | None = None) -> None:
        """Write one request durably; at the cap (or on a full disk) drop the oldest first."""
        with self._lock:
            entry = Entry(self._seq, signal, points, len(payload), zlib.crc32(payload), covers)
            self._seq += 1
            self.exported_points += points
            if entry.size > self.max_bytes:
                # Kept, it would push out everything else and still break the cap.
                self.dropped_points += points
                self.dropped_batches += 1
                log.warning("an export of %d bytes is larger than the whole OTLP buffer (%d bytes); dropped it "
                            "(%d points)", entry.size, self.max_bytes, points,
                            extra={"points": points, "bytes": entry.size})
                return
            while self._entries and self.size_bytes + entry.size > self.max_bytes:
                self._drop_oldest("OTLP buffer full: dropped the oldest batch")
            while True:
                try:
                    _write_durably(self.dir / entry.name, payload)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC or not self._entries:
                        self.dropped_points += points
                        self.dropped_batches += 1
                        log.error("could not write to the OTLP buffer; this export of %d points is lost (%s)",
                                  points, exc, extra={"points": points, "error": str(exc)})
                        raise
                    self._drop_oldest("disk full: dropped the oldest batch of the OTLP buffer")
            if covers is not None and covers > self.covered:
                # Before the sender can see (and delete) this file, so that a restart knows
                # which journal segments are safe in the buffer even once it has been sent.
                try:
                    _write_durably(self.dir / _COVERED, str(covers).encode())
                except OSError:
                    pass  # the file's own name says it too, while it is in the buffer
                self.covered = covers
            self._entries.append(entry)
            self.size_bytes += entry.size
            self.written_batches += 1
        self.has_data.set()

    def _drop_oldest(self, message: str) -> None:
        oldest = self._entries.pop(0)
        _remove(self.dir / oldest.name)
        self.size_bytes -= oldest.size
        if oldest == self._in_flight:
            # Its bytes are already on their way: whether they arrive is known only when
            # the send ends (`done` or `retry`), which counts them as sent or dropped.
            self._evicted = oldest
            log.warning("%s: the batch being sent (%d points, %s); it counts as dropped unless this send "
                        "succeeds", message, oldest.points, oldest.name,
                        extra={"points": oldest.points, "buffer_bytes": self.size_bytes})
            return
        self.dropped_points += oldest.points
        self.dropped_batches += 1
        log.warning("%s (%d points, %s)", message, oldest.points, oldest.name,
                    extra={"points": oldest.points, "buffer_bytes": self.size_bytes})

    def oldest(self) -> tuple[Entry, bytes] | None:
        with self._lock:
            while self._entries:
                entry = self._entries[0]
                try:
                    payload = (self.dir / entry.name).read_bytes()
                except OSError:  # removed from outside: forget it
                    self._entries.pop(0)
                    self.size_bytes -= entry.size
                    continue
                if entry.crc is not None and zlib.crc32(payload) != entry.crc:
                    self.corrupt_batches += 1
                    self._drop_oldest("corrupt file in the OTLP buffer skipped")
                    continue
                self._in_flight = entry
                return entry, payload
            self.has_data.clear()
            return None

    def done(self, entry: Entry, delivered: bool) -> None:
        """The send of `entry` ended: the collector took it (`delivered`) or refused it for good."""
        with self._lock:
            self._in_flight = None
            if entry == self._evicted:
                self._evicted = None
                self._count(entry, delivered)
            elif self._entries and self._entries[0] == entry:
                self._entries.pop(0)
                self.size_bytes -= entry.size
                _remove(self.dir / entry.name)
                self._count(entry, delivered)

    def retry(self, entry: Entry) -> None:
        """The send of `entry` failed and will be tried again; if its file went meanwhile, it is lost."""
        with self._lock:
            self._in_flight = None
            if entry == self._evicted:
                self._evicted = None
                self._count(entry, delivered=False)

    def _count(self, entry: Entry, delivered: bool) -> None:
        if delivered:
            self.sent_batches += 1
            self.sent_points += entry.points
        else:
            self.dropped_points += entry.points
            self.dropped_batches += 1

    @property
    def batches(self) -> int:
        return len(self._entries)

    @property
    def buffered_points(self) -> int:
        with self._lock:
            return sum(e.points for e in self._entries)

    def books(self) -> str:
        """One line that accounts for every data point this run handled."""
        return (f"{self.inherited_points} points found in the OTLP buffer at start, {self.exported_points} "
                f"exported into it, {self.sent_points} sent, {self.dropped_points} dropped "
                f"({self.corrupt_batches} corrupt files), {self.buffered_points} still buffered")


def _write_durably(path: Path, payload: bytes) -> None:
    """Write `path` so that after a crash or power cut it holds all of `payload` or is
    absent (or unchanged): a temporary file, fsync, rename over, fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # readers never see a partial file
    except OSError:
        _remove(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make renames and removals in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except IsADirectoryError:
        pass  # never ours to remove; skipped by the scan
    except OSError:
        pass


class Sender(threading.Thread):
    """Posts spooled requests to the collector, oldest first, retrying with backoff."""

    def __init__(
        self,
        spool: Spool,
        endpoint: str,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        super().__init__(name="mlpack-agent-otlp", daemon=True)
        self.spool = spool
        self.endpoint = endpoint.rstrip("/")
        self.headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.failures = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.spool.has_data.set()

    def run(self) -> None:
        backoff = 0.25
        while not self._stopping.is_set():
            item = self.spool.oldest()
            if item is None:
                self.spool.has_data.wait(1.0)
                continue
            entry, payload = item
            try:
                outcome = self._post(entry.signal, payload)
            except Exception:  # noqa: BLE001 - the sender must outlive any one batch
                log.exception("sending a batch failed unexpectedly; retrying")
                outcome = "retry"
            if outcome == "retry":
                self.spool.retry(entry)
                self.failures += 1
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.25
            self.spool.done(entry, delivered=outcome == "ok")

    def drain(self, deadline_s: float) -> None:
        """Send what is queued, for at most `deadline_s` (used at shutdown)."""
        import time

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            item = self.spool.oldest()
            if item is None:
                return
            entry, payload = item
            outcome = self._post(entry.signal, payload)
            if outcome == "retry":
                self.spool.retry(entry)
                return  # collector away: the files stay for the next start
            self.spool.done(entry, delivered=outcome == "ok")

    def _post(self, signal: str, payload: bytes) -> str:
        request = urllib.request.Request(
            self.endpoint + SIGNAL_PATHS[signal], data=payload, headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            return "ok"
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRYABLE:
                return "retry"
            log.error("collector rejected a batch; dropping it", extra={"status": exc.code, "signal": signal})
            return "rejected"
        except (urllib.error.URLError, OSError):
            return "retry"
