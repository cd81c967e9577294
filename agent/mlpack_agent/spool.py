"""A bounded on-disk queue of OTLP requests, and the thread that ships it in order.

Every export (metrics or logs) is serialized to OTLP protobuf and written as one file
before anything is sent, so a collector outage (or an agent restart) loses nothing:
the sender retries the oldest file with backoff until the collector answers, then
catches up. When the folder would exceed `max_bytes`, the oldest files go first and
the data points they held are counted in `dropped_points`.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("mlpack_agent.spool")

SIGNAL_PATHS = {"metrics": "/v1/metrics", "logs": "/v1/logs"}
# Answers that mean "try again later" (OTLP/HTTP spec); any other 4xx will never succeed.
_RETRYABLE = {408, 429, 502, 503, 504}


@dataclass(frozen=True, order=True)
class Entry:
    seq: int
    signal: str
    points: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.seq:016d}.{self.signal}.{self.points}.pb"


class Spool:
    """Files named `<seq>.<signal>.<points>.pb`; the sequence number keeps send order."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped_points = 0
        self.dropped_batches = 0
        self.written_batches = 0
        self.sent_batches = 0
        self._lock = threading.Lock()
        self._entries: list[Entry] = sorted(self._scan())  # what an earlier run left behind
        self._seq = self._entries[-1].seq + 1 if self._entries else 0
        self.size_bytes = sum(e.size for e in self._entries)
        self.has_data = threading.Event()
        if self._entries:
            self.has_data.set()

    def _scan(self):
        for path in self.dir.glob("*.pb"):
            try:
                seq, signal, points, _ = path.name.split(".")
                yield Entry(int(seq), signal, int(points), path.stat().st_size)
            except (ValueError, OSError):
                path.unlink(missing_ok=True)  # a partial write from a crash
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def put(self, signal: str, payload: bytes, points: int) -> None:
        with self._lock:
            entry = Entry(self._seq, signal, points, len(payload))
            self._seq += 1
            while self._entries and self.size_bytes + entry.size > self.max_bytes:
                self._drop_oldest()
            tmp = self.dir / (entry.name + ".tmp")
            with open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())  # an edge device may lose power, not just the agent
            os.replace(tmp, self.dir / entry.name)  # readers never see a partial file
            self._entries.append(entry)
            self.size_bytes += entry.size
            self.written_batches += 1
        self.has_data.set()

    def _drop_oldest(self) -> None:
        oldest = self._entries.pop(0)
        (self.dir / oldest.name).unlink(missing_ok=True)
        self.size_bytes -= oldest.size
        self.dropped_points += oldest.points
        self.dropped_batches += 1
        log.warning(
            "OTLP buffer full: dropped the oldest batch",
            extra={"points": oldest.points, "buffer_bytes": self.size_bytes},
        )

    def oldest(self) -> tuple[Entry, bytes] | None:
        with self._lock:
            while self._entries:
                entry = self._entries[0]
                try:
                    return entry, (self.dir / entry.name).read_bytes()
                except OSError:  # removed from outside: forget it
                    self._entries.pop(0)
                    self.size_bytes -= entry.size
            self.has_data.clear()
            return None

    def done(self, entry: Entry, delivered: bool) -> None:
        with self._lock:
            if self._entries and self._entries[0] == entry:
                self._entries.pop(0)
                self.size_bytes -= entry.size
                (self.dir / entry.name).unlink(missing_ok=True)
                if delivered:
                    self.sent_batches += 1
                else:
                    self.dropped_points += entry.points
                    self.dropped_batches += 1

    @property
    def batches(self) -> int:
        return len(self._entries)


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
            outcome = self._post(entry.signal, payload)
            if outcome == "retry":
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
