"""The test pyramid, decided by the fixtures a test uses (applied in tests/conftest.py).

A fixture that builds an artifact or an image, or starts a fleet or a server that takes
seconds, is decorated `@heavy`; one that starts a quick local process or server (an agent,
an HTTP stub) `@local`. Tests are then marked automatically:

- `slow`: uses a `@heavy` fixture (anywhere in its fixture closure), or says
  `@pytest.mark.slow` itself (what it builds or serves is in its body);
- `unit`: uses neither kind and is not `slow`: `pytest -m unit` runs in seconds.

`make test-fast` runs `-m "not slow"`. At the end of a run, tests that are not `slow`
but took longer than `SLOW_NOTICE_S` are listed, so the pyramid stays true.

    @pytest.fixture(scope="module")
    @heavy
    def fleet(...): ...
"""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

import pytest

F = TypeVar("F", bound=Callable)

KIND = "__mlpack_fixture_kind__"
SLOW_NOTICE_S = 5.0  # a not-slow test past this is listed in the summary (not failed: load varies)


def heavy(function: F) -> F:
    """Marks a fixture that builds or serves for seconds: its tests are `slow`."""
    setattr(function, KIND, "heavy")
    return function


def local(function: F) -> F:
    """Marks a fixture that starts a quick local process or server: its tests are not `unit`."""
    setattr(function, KIND, "local")
    return function


def fixture_kinds(item: pytest.Item) -> set[str]:
    """The kinds of the fixtures an item uses, its whole closure included."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    kinds = set()
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in info.name2fixturedefs.get(name, ()):
            kind = getattr(fixturedef.func, KIND, None)
            if kind:
                kinds.add(kind)
    return kinds


def mark(items: Iterable[pytest.Item]) -> None:
    for item in items:
        kinds = fixture_kinds(item)
        if "heavy" in kinds and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if not kinds and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)


def keep_phases_in_order(items: list[pytest.Item]) -> None:
    """A module marked `phases` tells one scenario test by test, against one live system
    (a Prometheus that counts every request so far): pytest-randomly still places the
    module anywhere, but its tests run in the order they are written."""
    slots: dict[object, list[int]] = {}
    for i, item in enumerate(items):
        if item.get_closest_marker("phases") is not None:
            slots.setdefault(getattr(item, "module", None), []).append(i)
    for positions in slots.values():
        ordered = sorted((items[i] for i in positions), key=lambda item: (item.location[1] or 0, item.nodeid))
        for i, item in zip(positions, ordered):
            items[i] = item
