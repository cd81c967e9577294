"""Longest test files first, so that both xdist workers end together (applied in tests/conftest.py).

`make test` runs two workers, each taking whole files (`--dist loadfile`), in collection
order (`--no-loadscope-reorder`). xdist's own order (most tests first) handed out a file of
a few very long tests, such as the ten-device fleet or the README's installs, late in a
run: one worker went on alone for minutes at the end. Here every run records the seconds
each file took (setup, call and teardown of its tests) in pytest's cache
(`.pytest_cache/v/mlpack/file-seconds`), and the next run starts with the files that took
longest: the shortest fill in at the end, on whichever worker is free.

A file with no record (a new file, a fresh clone) comes before every recorded one, most
tests first, as xdist would order it. The tests of a file keep pytest-randomly's order;
files of the same length keep theirs too.

Only a run that selects by file (no `-k`, `-m` or `--lf`) records, so a partial file never
looks short.
"""

from __future__ import annotations

from collections import Counter

import pytest

CACHE_KEY = "mlpack/file-seconds"


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def order(items: list[pytest.Item], seconds: dict[str, float]) -> None:
    """Group and sort `items` by file: unrecorded files first (most tests first), then
    recorded ones, longest first. Stable: each file's own order is kept."""
    counts = Counter(file_of(item.nodeid) for item in items)

    def key(item: pytest.Item) -> tuple[int, float]:
        name = file_of(item.nodeid)
        if name in seconds:
            return (1, -seconds[name])
        return (0, -counts[name])

    # A file's items share one key, so the stable sort keeps them together in their order.
    items.sort(key=key)


def recorded(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)
    value = cache.get(CACHE_KEY, {}) if cache is not None else {}
    return value if isinstance(value, dict) else {}


def records(config: pytest.Config) -> bool:
    """Whether this run's durations are whole files' (and this process sees every report)."""
    opt = config.option
    partial = getattr(opt, "keyword", "") or getattr(opt, "markexpr", "") or getattr(opt, "lf", False)
    return not partial and not hasattr(config, "workerinput") and getattr(config, "cache", None) is not None


class Recorder:
    """Sums each file's test durations in the process that sees every report (the xdist
    controller, or the one pytest process without xdist) and saves them at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.seconds: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.seconds:
            merged = {**recorded(self.config), **{name: round(s, 1) for name, s in self.seconds.items()}}
            self.config.cache.set(CACHE_KEY, dict(sorted(merged.items())))
