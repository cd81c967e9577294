"""The event journal: every datagram the agent receives stays on disk until an export holds it.

Between two exports (`otlp.interval_s`) the agent's metrics live in memory. So that a
killed agent (kill -9, the OOM killer, a crash) loses none of them, the receiver appends
each datagram to the current journal segment before it is recorded. At each export the
agent seals the segment (new datagrams go to the next one), waits until everything before
the seal is recorded, collects, and writes the export into the spool marked with the
sealed segment's number (`Spool.put(covers=...)`); the segments up to it are then deleted.
At start, the segments no export holds are replayed into the instruments, so their events
are exported in the first interval, once.

Durability: a `write` is in the kernel's page cache at once, and that survives the
process, so kill -9 loses nothing the agent had read from its socket. Against a power cut
the segment is fsynced every `buffer.fsync_interval_s` (and when it is sealed): only the
events of the last interval can be lost then.

Size: the journal holds at most `max_bytes` (the agent gives it a quarter of
`buffer.max_bytes`); a segment is sealed (an early export) once it holds half of that, or
4 MiB. When exports cannot free segments (the disk buffer cannot take them) and the journal
is at its cap, datagrams are recorded in memory only, with one log line, until an export
frees room: the cap holds, and only a kill in that state loses what memory held.

A record is a 4-byte length, a 4-byte CRC-32 and the datagram. A torn or corrupt record
ends the replay of its segment, with a log line; the agent starts all the same.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from .folders import private_dir
from .spool import fsync_dir

log = logging.getLogger("mlpack_agent.journal")

_HEADER = struct.Struct("<II")  # length, CRC-32
_SUFFIX = ".events"
# A segment this large asks for an early export, which bounds the journal on disk.
MAX_SEGMENT_BYTES = 4 * 1024 * 1024


class Journal:
    """Segments `<n>.events` in `directory`; the caller holds `lock` around append + enqueue
    and around rotate, so that every datagram's segment matches the export that records it."""

    def __init__(self, directory: str | os.PathLike[str], covered: int,
                 max_bytes: int = 4 * MAX_SEGMENT_BYTES) -> None:
        self.dir = private_dir(directory)
        self.lock = threading.Lock()
        self.max_bytes = max_bytes
        self.max_segment_bytes = min(MAX_SEGMENT_BYTES, max_bytes // 2)
        self.failures = 0  # datagrams that could not be written (disk full): memory only
        self.over_cap = 0  # datagrams not written because the journal was at its cap: memory only
        self._sizes: dict[int, int] = {}  # bytes of each segment on disk
        found = sorted(self._segments())
        self.release(covered, found)
        self.pending = [n for n in found if n > covered]  # to replay: no export holds them
        for n in self.pending:
            self._sizes[n] = self._path(n).stat().st_size
        self.segment = max([covered, *found]) + 1
        self.size = 0
        self._capped = False
        self._dirty = False
        self._fd = self._open(self.segment)

    def _segments(self) -> Iterator[int]:
        for path in self.dir.glob(f"*{_SUFFIX}"):
            try:
                yield int(path.name[: -len(_SUFFIX)])
            except ValueError:
                continue

    def _path(self, segment: int) -> Path:
        return self.dir / f"{segment:016d}{_SUFFIX}"

    def _open(self, segment: int) -> int:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fsync_dir(self.dir)
        return fd

    def replay(self) -> Iterator[bytes]:
        """The datagrams of the segments no export holds, oldest first."""
        for segment in self.pending:
            try:
                data = self._path(segment).read_bytes()
            except OSError:
                continue
            offset = 0
            while offset < len(data):
                if offset + _HEADER.size > len(data):
                    self._corrupt(segment, offset, "a record cut short")
                    break
                length, crc = _HEADER.unpack_from(data, offset)
                record = data[offset + _HEADER.size: offset + _HEADER.size + length]
                if len(record) != length or zlib.crc32(record) != crc:
                    self._corrupt(segment, offset, "a record that does not match its CRC-32")
                    break
                yield record
                offset += _HEADER.size + length

    @staticmethod
    def _corrupt(segment: int, offset: int, what: str) -> None:
        log.warning("journal segment %d ends in %s at byte %d; replaying the records before it",
                    segment, what, offset, extra={"segment": segment, "offset": offset})

    @property
    def total_bytes(self) -> int:
        """What the journal holds on disk: the current segment and those no export freed yet."""
        return self.size + sum(self._sizes.values())

    def append(self, data: bytes) -> bool:
        """Write one datagram (caller holds `lock`); True when this write filled the segment
        (time for an early export). A failed write (a full disk) is counted and logged once;
        at the cap it is counted and logged once per episode; either way the event is still
        recorded in memory."""
        record = _HEADER.size + len(data)
        if self.total_bytes + record > self.max_bytes:
            self.over_cap += 1
            if not self._capped:
                self._capped = True
                log.warning("the event journal is at its cap (%d bytes) because exports cannot free it; new events "
                            "are kept in memory only until an export does", self.max_bytes,
                            extra={"journal_bytes": self.total_bytes})
            return False
        self._capped = False
        try:
            os.write(self._fd, _HEADER.pack(len(data), zlib.crc32(data)) + data)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1:
                log.error("cannot write the event journal; events are kept in memory only until the next export",
                          extra={"error": str(exc)})
            return False
        was_full = self.full
        self.size += record
        self._dirty = True
        return self.full and not was_full

    @property
    def full(self) -> bool:
        return self.size >= self.max_segment_bytes

    def rotate(self) -> int:
        """Seal the current segment and start the next (caller holds `lock`); returns the sealed one."""
        sealed = self.segment
        self._sync()
        os.close(self._fd)
        self._sizes[sealed] = self.size
        self.segment += 1
        self.size = 0
        self._fd = self._open(self.segment)
        return sealed

    def release(self, upto: int, segments: list[int] | None = None) -> None:
        """Delete the sealed segments up to `upto`: an export in the spool holds their events."""
        for segment in self._segments() if segments is None else segments:
            if segment <= upto and segment != getattr(self, "segment", None):
                self._path(segment).unlink(missing_ok=True)
                with self.lock:  # the receiver reads the sizes in append()
                    self._sizes.pop(segment, None)

    def sync(self) -> None:
        with self.lock:
            self._sync()

    def _sync(self) -> None:
        if self._dirty:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            self._dirty = False

    def close(self) -> None:
        with self.lock:
            self._sync()
            os.close(self._fd)
