"""Progress lines on stderr for long steps; silent with --quiet."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Elapsed:
    """How long a progress step took, filled in when it ends."""

    seconds: float = 0.0


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def step(self, message: str) -> Iterator[Elapsed]:
        elapsed = Elapsed()
        started = time.perf_counter()
        self.info(f"• {message} ...")
        yield elapsed
        elapsed.seconds = time.perf_counter() - started
        self.info(f"  done in {elapsed.seconds:.1f}s")
