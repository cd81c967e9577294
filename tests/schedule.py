"""Longest test files first, so that the xdist workers end together (applied in tests/conftest.py).

`make test` runs three workers, each taking whole files (`--dist loadfile`), in collection
order (`--no-loadscope-reorder`). xdist's own order (most tests first) handed out a file of
a few very long tests, such as the ten-device fleet or the README's installs, late in a
run: one worker went on alone for minutes at the end. Here every run records the seconds
each file took (setup, call and teardown of its tests) in pytest's cache
(`.pytest_cache/v/mlpack/file-seconds`), and the next run starts with the files that took
longest: the shortest fill in at the end, on whichever worker is free.

A fresh clone has no cache: there the seconds committed in tests/file_seconds.json (a full
run's, written by `python -m tests.schedule --record JUNIT.xml` from `--junitxml`) stand in,
and the cache's figures replace them file by file once there are some. A file with no record
in either (a new file) comes before every recorded one, most tests first, as xdist would
order it. The tests of a file keep pytest-randomly's order; files of the same length keep
theirs too.

Only a run that selects by file (no `-k`, `-m` or `--lf`) records, so a partial file never
looks short.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

CACHE_KEY = "mlpack/file-seconds"
# A full run's seconds by file, for a clone whose cache holds none (see the docstring).
COMMITTED = Path(__file__).with_name("file_seconds.json")


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


def committed(path: Path) -> dict[str, float]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def cached(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)
    value = cache.get(CACHE_KEY, {}) if cache is not None else {}
    return value if isinstance(value, dict) else {}


def recorded(config: pytest.Config) -> dict[str, float]:
    """This clone's own seconds by file (pytest's cache), over the committed ones."""
    return {**committed(COMMITTED), **cached(config)}


def from_junit(junit: Path) -> dict[str, float]:
    """Seconds by test file from a `--junitxml` report (a test's time there is its setup,
    call and teardown, as the Recorder sums them)."""
    seconds: Counter[str] = Counter()
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "")
        parts = module.split(".")
        # "tests.test_x" or "tests.test_x.TestClass": the module is the part up to test_*.
        index = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
        seconds["/".join(parts[:index + 1]) + ".py"] += float(case.get("time", 0) or 0)
    return {name: round(s, 1) for name, s in sorted(seconds.items())}


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
            merged = {**cached(self.config), **{name: round(s, 1) for name, s in self.seconds.items()}}
            self.config.cache.set(CACHE_KEY, dict(sorted(merged.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.schedule", description=(
        "Write the committed seconds by file (tests/file_seconds.json) from a full run's junit "
        "report: make test PYTEST_ARGS=--junitxml=junit.xml, then --record junit.xml."))
    parser.add_argument("--record", type=Path, required=True, metavar="JUNIT.xml")
    parser.add_argument("--out", type=Path, default=COMMITTED)
    args = parser.parse_args(argv)
    seconds = from_junit(args.record)
    args.out.write_text(json.dumps(seconds, indent=2) + "\n")
    print(f"{len(seconds)} files, {sum(seconds.values()):.0f} s, written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
