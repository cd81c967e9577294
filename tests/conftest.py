"""Shared fixtures. Models are made here with onnx.helper and scikit-learn: no downloads.

Also the `requires_tool` marker: a test that needs a program, a Python package or a file
that a developer may lack skips without it, with the install hint; with CI=true it fails
with that hint instead, so that a green CI cannot hide a missing install step:

    @pytest.mark.requires_tool("promtool", hint="apt-get install prometheus")
    @pytest.mark.requires_tool("hcl2", module=True, hint="python-hcl2, a test dependency")
    @pytest.mark.requires_tool(IAC_VENV / "bin" / "checkov", hint="bash .ci/iac-venv.sh")
    @pytest.mark.requires_tool("qemu-aarch64 binfmt", present=binfmt_enabled, hint="...")

A name is a program on PATH (or in the sbin folders); a path (a Path, or a name with a
slash) must exist; with module=True each name is an importable Python module; `present`,
a callable, decides instead of a lookup where the tool is no single file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mlpack.build import BuildRequest, BuildResult, build
from mlpack.progress import Progress

from . import pyramid, schedule
from .models import linear_model
from .session_builds import Snapshot, shared

REPO = Path(__file__).resolve().parents[1]


def uv(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uv", *args], check=True, capture_output=True, text=True, **kwargs)


def user_environ(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This environment as a user's shell has it, less `drop`: Python writes bytecode there
    (CI machines, this one too, set PYTHONDONTWRITEBYTECODE)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", *drop)}

pytest_plugins = ["pytester"]  # tests/test_requires_tool.py runs pytest on generated tests
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # sshd and friends, off a user's PATH


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_tools(*tools: str | os.PathLike, hint: str, module: bool = False,
                  present: Callable[[], bool] | None = None) -> list[str]:
    """The tools of a requires_tool marker that are not there (its arguments, checked)."""
    if not tools or not hint.strip():
        raise TypeError("requires_tool needs the tools' names and an install hint")
    if present is not None:
        return [] if present() else [str(tool) for tool in tools]
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])

    def found(tool: str | os.PathLike) -> bool:
        if module:
            try:
                return importlib.util.find_spec(str(tool)) is not None
            except ModuleNotFoundError:  # a dotted name whose parent package is missing
                return False
        if isinstance(tool, os.PathLike) or "/" in tool:
            return Path(tool).exists()
        return shutil.which(tool, path=path) is not None

    return [str(tool) for tool in tools if not found(tool)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """requires_tool, before any fixture runs: skip for a missing tool, or fail under CI."""
    for mark in item.iter_markers("requires_tool"):
        missing = missing_tools(*mark.args, **mark.kwargs)
        if not missing:
            continue
        needs = f"needs {', '.join(missing)}, which is not installed: {mark.kwargs['hint']}"
        if in_ci():
            pytest.fail(f"{needs} (CI=true: .ci/run must install every tool a test names)", pytrace=False)
        pytest.skip(needs)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the demo model cache out of the user's home during tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPACK_CACHE", str(tmp_path_factory.mktemp("mlpack-cache")))
    mp.setenv("MLPACK_STATE_DIR", str(tmp_path_factory.mktemp("mlpack-state")))  # rollout state and locks
    mp.setenv("BENTOML_DO_NOT_TRACK", "true")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def short_timing() -> Iterator[None]:
    """Builds time their candidates for 0.2 s instead of TIMING_BUDGET_S (10 s), for tests
    where what is built, gated and served is under test, not latency. Module-scoped, so a
    module's shared builds get it too; the pick still ranks measured latencies."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mlpack.optimize.pipeline.TIMING_BUDGET_S", 0.2)
        yield


@pytest.fixture
def linear_onnx(tmp_path: Path) -> Path:
    return linear_model(tmp_path / "linear.onnx")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    pyramid.mark(items)
    pyramid.keep_phases_in_order(items)  # after pytest-randomly's shuffle (a wrapper, it runs first)
    schedule.order(items, schedule.recorded(config))  # longest files first, for xdist's workers


def pytest_configure(config: pytest.Config) -> None:
    if schedule.records(config):
        config.pluginmanager.register(schedule.Recorder(config), "mlpack-file-seconds")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Tests not marked slow that took long: mark them, or give them a @heavy fixture."""
    slow = []
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call" and "slow" not in report.keywords and report.duration > pyramid.SLOW_NOTICE_S:
            slow.append((report.duration, report.nodeid))
    if slow:
        terminalreporter.section("not marked slow, over %.0f s (tests/pyramid.py)" % pyramid.SLOW_NOTICE_S)
        for duration, nodeid in sorted(slow, reverse=True):
            terminalreporter.write_line(f"{duration:6.1f}s {nodeid}")


_DEMO_SNAPSHOTS: dict[str, tuple[BuildResult, Snapshot]] = {}


@pytest.fixture(scope="session")
@pyramid.heavy
def demo_artifact(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], BuildResult]:
    """The demo built for a target once per test run, whichever worker asks first:
    demo_artifact("x86-cpu"). Shared: copy it before changing anything in it."""

    def make(target: str, out: Path) -> tuple[BuildResult, Snapshot]:
        result = build(BuildRequest(target=target, out=out), Progress(quiet=True))
        return result, Snapshot.of(result.path)

    def get(target: str) -> BuildResult:
        if target not in _DEMO_SNAPSHOTS:
            _DEMO_SNAPSHOTS[target] = shared(tmp_path_factory, f"demo-{target}", lambda out: make(target, out))
        return _DEMO_SNAPSHOTS[target][0]

    return get


@pytest.fixture(autouse=True)
def _shared_demo_artifacts_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that writes into a shared demo artifact fails here, naming what it changed."""
    yield
    if "demo_artifact" not in request.fixturenames:
        return
    for target, (_, snapshot) in _DEMO_SNAPSHOTS.items():
        changed = snapshot.changed()
        assert not changed, (f"the shared demo artifact for {target} changed during this test (or one running "
                             f"beside it): {changed[:5]}; copy it to tmp_path before changing it")


@pytest.fixture(scope="session")
@pyramid.heavy
def mlpack_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mlpack wheel built from this repository, once per test run (shared by the workers)."""

    def make(dist: Path) -> Path:
        uv("build", "--wheel", "--out-dir", str(dist), str(REPO))
        wheels = list(dist.glob("mlpack-*.whl"))
        assert len(wheels) == 1
        return wheels[0]

    return shared(tmp_path_factory, "wheel", make)
