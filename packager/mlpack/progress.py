"""Progress on stderr for long steps; silent with --quiet.

On a terminal, a step is a live line (rich): a spinner, its elapsed time and the last line
logged inside it, with bars where the work is counted (`bar`: timing candidates, pushing
images). Anywhere else (CI logs, pipes) the output is plain lines, the same as ever:

    • Optimizing for x86-cpu ...
      float: 204,667 bytes, gate pass
      done in 9.3s

`MLPACK_PROGRESS=plain` (or `live`) overrides the choice. stdout is never written here:
it is left to the commands' results (and their `--json` summaries).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress, TaskID


@dataclass
class Elapsed:
    """How long a progress step took, filled in when it ends."""

    seconds: float = 0.0


class Bar:
    """A counted part of a step: `advance()` as each item is done, or `update(completed)`."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress, self._task = progress, task
        self.completed = 0.0

    def advance(self, amount: float = 1) -> None:
        self.update(self.completed + amount)

    def update(self, completed: float) -> None:
        self.completed = completed
        if self._progress is not None and self._progress._bars is not None and self._task is not None:
            self._progress._bars.update(self._task, completed=completed)


def live_terminal(stream: Any = None) -> bool:
    """Whether progress can draw live lines: stderr is a terminal that is not `dumb`."""
    choice = os.environ.get("MLPACK_PROGRESS", "").strip().lower()
    if choice in ("plain", "live"):
        return choice == "live"
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM", "") != "dumb"


class Progress:
    def __init__(self, quiet: bool = False, live: bool | None = None, console: Console | None = None) -> None:
        self.quiet = quiet
        self.live = not quiet and (live_terminal() if live is None else live)
        self._console = console
        self._bars: RichProgress | None = None
        self._open = 0  # live tasks shown now (steps and bars)
        self._step_task: TaskID | None = None

    # ---- the API every caller uses ------------------------------------------------

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if not self.live:
            print(message, file=sys.stderr, flush=True)
            return
        self._console_now().print(message, markup=False, highlight=False, soft_wrap=True)
        if self._bars is not None and self._step_task is not None:
            self._bars.update(self._step_task, status=message.strip()[:120])

    @contextmanager
    def step(self, message: str) -> Iterator[Elapsed]:
        elapsed = Elapsed()
        started = time.perf_counter()
        if not self.live:
            self.info(f"• {message} ...")
            yield elapsed
            elapsed.seconds = time.perf_counter() - started
            self.info(f"  done in {elapsed.seconds:.1f}s")
            return
        outer = self._step_task
        with self._task(message, total=None) as task:
            self._step_task = task
            try:
                yield elapsed
            finally:
                self._step_task = outer
        elapsed.seconds = time.perf_counter() - started
        self.info(f"• {message} ... done in {elapsed.seconds:.1f}s")

    @contextmanager
    def bar(self, description: str, total: float) -> Iterator[Bar]:
        """A bar of `total` units inside a step, drawn on a terminal only: plain output
        already has the lines the callers log."""
        if not self.live:
            yield Bar()
            return
        with self._task(description, total=total) as task:
            yield Bar(self, task)

    # ---- the live display ---------------------------------------------------------

    def _console_now(self) -> Console:
        if self._bars is not None:
            return self._bars.console
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    @contextmanager
    def _task(self, description: str, total: float | None) -> Iterator[TaskID]:
        from rich.progress import (BarColumn, Progress as RichProgress, SpinnerColumn, TaskProgressColumn,
                                   TextColumn, TimeElapsedColumn)

        if self._bars is None:
            self._bars = RichProgress(
                SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                TaskProgressColumn(), TimeElapsedColumn(), TextColumn("{task.fields[status]}", markup=False,
                                                                       style="dim"),
                console=self._console_now(), transient=True,
            )
            self._bars.start()
        self._open += 1
        task = self._bars.add_task(description, total=total, status="")
        try:
            yield task
        finally:
            self._bars.remove_task(task)
            self._open -= 1
            if self._open == 0:
                self._bars.stop()
                self._bars = None
