"""The capture folder: sampled request inputs, written as JSON lines, rotated under a cap.

Only a service started with MLPACK_CAPTURE_RATE sends samples (mlpack_runtime.capture);
only an agent with `capture.dir` writes them (else they are refused and counted). Files
are `capture-<ns since the epoch>.jsonl` (mode 0600, in a folder created 0700; the agent
refuses to start with one that another user owns or can enter); a new
one starts once the current one holds `capture.file_bytes`, and the oldest files are
deleted while the folder holds more than `capture.max_bytes`. Each line:
{"time": <unix seconds>, "inputs": {<input name>: <values>}}.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .config import CaptureConfig
from .folders import check_private, private_dir

log = logging.getLogger("mlpack_agent.capture")
PREFIX, SUFFIX = "capture-", ".jsonl"


class CaptureFolder:
    def __init__(self, config: CaptureConfig) -> None:
        self.folder = private_dir(config.dir)
        check_private(self.folder, "the capture folder")  # raw inputs: for this user's eyes only
        self.max_bytes, self.file_bytes = config.max_bytes, config.file_bytes
        self.files: list[tuple[Path, int]] = sorted(
            (p, p.stat().st_size) for p in self.folder.glob(f"{PREFIX}*{SUFFIX}"))
        self.written = 0  # samples written by this agent
        self._fd: int | None = None
        self._size = 0

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files) + self._size

    def write(self, inputs: dict[str, Any]) -> bool:
        """Append one sample; False when it cannot be written (the disk, the cap)."""
        line = (json.dumps({"time": round(time.time(), 3), "inputs": inputs}, separators=(",", ":")) + "\n").encode()
        if len(line) > self.file_bytes:
            return False
        try:
            if self._fd is None or self._size + len(line) > self.file_bytes:
                self._rotate()
            os.write(self._fd, line)
        except OSError as exc:
            log.warning("capture sample not written: %s", exc)
            return False
        self._size += len(line)
        self.written += 1
        self._trim()
        return True

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self.files.append((self._path, self._size))
        self._path = self.folder / f"{PREFIX}{time.time_ns():020d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._size = 0

    def _trim(self) -> None:
        while self.files and self.total_bytes > self.max_bytes:
            path, _ = self.files.pop(0)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
