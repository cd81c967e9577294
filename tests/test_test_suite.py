"""The suite's own rules: markers come from the fixtures a test uses (tests/pyramid.py),
files run longest first (tests/schedule.py), session builds run once for all xdist workers
(tests/session_builds.py), a shared artifact that changes is caught, and test modules share
helpers through support modules only."""

from __future__ import annotations

import ast
import json
import multiprocessing
import time
from pathlib import Path

import pytest

from . import schedule
from .session_builds import Snapshot, shared

TESTS = Path(__file__).parent

GENERATED = '''
import pytest
from tests.pyramid import heavy, local

@pytest.fixture
@heavy
def built():
    return "artifact"

@pytest.fixture
@local
def agent():
    return "process"

@pytest.fixture
def through(built):
    return built

def test_plain():
    pass

def test_builds(built):
    pass

def test_builds_through_another_fixture(through):
    pass

def test_talks_to_a_process(agent):
    pass

@pytest.mark.slow
def test_marked_by_hand():
    pass
'''


def test_markers_follow_the_fixtures_a_test_uses(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    pytester.makepyfile(test_generated=GENERATED)
    for expression, expected in (
        ("unit", ["test_plain"]),
        ("slow", ["test_builds", "test_builds_through_another_fixture", "test_marked_by_hand"]),
        ("not slow", ["test_plain", "test_talks_to_a_process"]),
    ):
        run = pytester.runpytest("-m", expression, "--collect-only", "-q", "-p", "no:randomly")
        collected = sorted(line.split("::")[-1] for line in run.outlines if "::" in line)
        assert collected == expected, expression


def test_a_phases_module_keeps_its_written_order_under_random_order(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    steps = [f"test_step_{name}" for name in "dcbafehg"]  # written in this order, not alphabetically
    body = "".join(f"def {name}():\n    pass\n\n" for name in steps)
    pytester.makepyfile(test_phased="import pytest\npytestmark = pytest.mark.phases\n\n" + body,
                        test_shuffled=body)

    def order(seed: int, module: str) -> list[str]:
        run = pytester.runpytest("--collect-only", "-q", f"--randomly-seed={seed}")
        return [line.split("::")[-1] for line in run.outlines if line.startswith(f"{module}.py::")]

    assert all(order(seed, "test_phased") == steps for seed in (1, 2, 3))
    assert any(order(seed, "test_shuffled") != steps for seed in (1, 2, 3))  # the others are shuffled


def test_files_run_longest_first_by_the_last_run_and_unrecorded_ones_before(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems, pytest_configure  # noqa: F401\n")
    quick = "".join(f"def test_quick_{i}():\n    pass\n\n" for i in range(3))
    pytester.makepyfile(test_many_quick=quick, test_one_long="import time\n\ndef test_long():\n    time.sleep(0.3)\n",
                        test_two="def test_a():\n    pass\n\ndef test_b():\n    pass\n")

    def files(*args: str) -> list[str]:
        run = pytester.runpytest("--collect-only", "-q", *args)
        return list(dict.fromkeys(line.split("::")[0] for line in run.outlines if "::" in line))

    # Nothing recorded yet: most tests first, as xdist orders files.
    assert files() == ["test_many_quick.py", "test_two.py", "test_one_long.py"]
    assert pytester.runpytest("-k", "long").ret == 0  # a selection by name records nothing
    assert files() == ["test_many_quick.py", "test_two.py", "test_one_long.py"]
    assert pytester.runpytest("test_one_long.py", "test_many_quick.py").ret == 0
    # Recorded files by their seconds, longest first, after the one not recorded.
    assert files() == ["test_two.py", "test_one_long.py", "test_many_quick.py"]
    assert files("-p", "no:randomly") == ["test_two.py", "test_one_long.py", "test_many_quick.py"]


def test_a_fresh_clone_orders_files_by_the_committed_seconds_until_its_cache_has_its_own(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems, pytest_configure  # noqa: F401\n")
    pytester.makepyfile(test_many="".join(f"def test_{i}():\n    pass\n\n" for i in range(3)),
                        test_slow="def test_slow():\n    pass\n", test_new="def test_new():\n    pass\n")
    junit = pytester.path / "junit.xml"  # a full run's report, as `--junitxml` writes it
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="test_many" name="test_0" time="0.5" />'
                     '<testcase classname="test_slow" name="test_slow" time="40.0" />'
                     '<testcase classname="test_many" name="test_1" time="1.2" /></testsuite></testsuites>')
    committed = pytester.path / "file_seconds.json"
    assert schedule.main(["--record", str(junit), "--out", str(committed)]) == 0
    assert json.loads(committed.read_text()) == {"test_many.py": 1.7, "test_slow.py": 40.0}
    monkeypatch.setattr(schedule, "COMMITTED", committed)

    def files(*args: str) -> list[str]:
        run = pytester.runpytest("--collect-only", "-q", "-p", "no:randomly", *args)
        return list(dict.fromkeys(line.split("::")[0] for line in run.outlines if "::" in line))

    # No cache: the committed seconds order the files; the file they lack comes first.
    assert files() == ["test_new.py", "test_slow.py", "test_many.py"]
    # The cache's own figure replaces the committed one for that file only.
    pytester.mkdir(".pytest_cache")
    assert pytester.runpytest("test_slow.py", "-p", "no:randomly").ret == 0  # records test_slow.py: ~0 s
    assert files() == ["test_new.py", "test_many.py", "test_slow.py"]


def test_the_committed_seconds_name_test_files_of_the_suite() -> None:
    seconds = schedule.committed(schedule.COMMITTED)
    assert seconds, "tests/file_seconds.json is missing: python -m tests.schedule --record JUNIT.xml"
    assert all(name.startswith("tests/test_") and name.endswith(".py") and s >= 0 for name, s in seconds.items())
    assert sum((TESTS.parent / name).is_file() for name in seconds) >= 0.9 * len(seconds)


def _build_once(root: str, name: str, log: str) -> str:
    class Factory:  # what shared() needs of pytest's TempPathFactory
        def getbasetemp(self) -> Path:
            return Path(root)

    def make(folder: Path) -> str:
        with open(log, "a") as out:
            out.write("built\n")
        time.sleep(0.5)  # long enough for the other process to be waiting on the lock
        (folder / "artifact").write_text("x")
        return str(folder / "artifact")

    return shared(Factory(), name, make)


def test_a_session_build_runs_once_for_every_worker(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        paths = pool.starmap(_build_once, [(str(tmp_path), "demo", str(log))] * 2)
    assert log.read_text() == "built\n"
    assert paths[0] == paths[1] and Path(paths[0]).read_text() == "x"


def test_a_snapshot_names_what_was_written_added_or_removed(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"weights")
    snapshot = Snapshot.of(tmp_path)
    assert snapshot.changed() == []
    (tmp_path / "manifest.json").write_text('{"edited": true}')
    (tmp_path / "history.json").write_text("{}")
    (tmp_path / "model" / "model.onnx").unlink()
    assert snapshot.changed() == ["history.json", "manifest.json", "model/model.onnx"]


def test_test_modules_import_helpers_from_support_modules_not_from_each_other() -> None:
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.split(".")[-1]
                if module.startswith("test_"):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names
                              if a.name.split(".")[-1].startswith("test_")]
    assert offenders == [], "move what is shared into a support module (tests/*.py without test_)"
