"""Progress lines on stderr for long steps; silent with --quiet."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        started = time.perf_counter()
        self.info(f"• {message} ...")
        yield
        self.info(f"  done in {time.perf_counter() - started:.1f}s")
