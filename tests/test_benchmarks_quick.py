"""Every `benchmarks/` script with a quick mode runs it here, in seconds: `--quick --check`
measures each figure beside its baseline in the same run and fails when a ratio passes the
goal its section of BENCHMARKS.md states (benchmarks/quick.py). The scripts without one
yet are listed, with why, and the list is checked against the scripts.

Scripts that serve or package the demo get the session's demo artifact (`--artifact`), so
the quick run adds its measurement, not a build; a script that checks what another test
file's fixture built (an image, the cuda-gpu benchmark's build) runs there
(BUILT_ELSEWHERE). `--help` of every script runs too, so a full mode that no longer
imports fails here."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

import pytest

from mlpack.build import BuildResult

from .lambda_support import requires_python312
from .quick_checks import REPO, quick_check
# The quick modes that take a second or two: they run in `make test-fast`.
QUICK = ["request_memory"]
# The quick modes that build, serve or start processes (seconds each): slow.
SLOW_QUICK = ["agent_bench", "optimize_bench", "large_model", "build_memory", "fault_table", "text_processing",
              "vision"]
# The quick modes that reuse the session's demo artifact for a target: slow.
ON_THE_DEMO = {"serve_protocols": "x86-cpu", "serve_throughput": "x86-cpu", "lambda_cold_start": "aws-lambda"}
# The quick modes that check what another test file's fixture built: run there.
BUILT_ELSEWHERE = {"image_sizes": "test_image.py", "image_start": "test_image.py", "gpu": "test_benchmark_gpu.py"}
# Scripts without a quick mode yet, with why.
NO_QUICK_MODE_YET: dict[str, str] = {}
HELPERS = {"__init__", "markdown", "quick", "minilm_model", "child", "routes", "reference_recipes"}  # imported by the scripts, not run


def scripts() -> set[str]:
    return {p.stem for p in (REPO / "benchmarks").glob("*.py")} - HELPERS


def test_every_benchmark_script_has_a_quick_check_or_says_why_not() -> None:
    with_quick = [*QUICK, *SLOW_QUICK, *ON_THE_DEMO, *BUILT_ELSEWHERE]
    assert len(set(with_quick)) == len(with_quick) and not set(with_quick) & set(NO_QUICK_MODE_YET)
    assert scripts() == set(with_quick) | set(NO_QUICK_MODE_YET)
    for name in with_quick:
        assert "--quick --check" in (REPO / "benchmarks" / f"{name}.py").read_text(), name
    for name, test_file in BUILT_ELSEWHERE.items():
        assert f'quick_check("{name}"' in (REPO / "tests" / test_file).read_text(), f"{test_file} runs {name}"


@pytest.mark.parametrize("name", sorted(scripts()))
def test_the_full_mode_of_every_script_imports(name: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("name", QUICK)
def test_the_quick_check_passes(name: str) -> None:
    quick_check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_QUICK)
def test_the_slower_quick_check_passes(name: str) -> None:
    quick_check(name)


@pytest.mark.parametrize("name", [pytest.param(name, marks=[requires_python312] if name == "lambda_cold_start" else [])
                                  for name in ON_THE_DEMO])
def test_the_quick_check_passes_on_the_sessions_demo(name: str,
                                                     demo_artifact: Callable[[str], BuildResult]) -> None:
    quick_check(name, "--artifact", str(demo_artifact(ON_THE_DEMO[name]).path))


def _tries(values: list[float]) -> tuple[list[int], Callable[[int], list]]:
    from benchmarks.quick import Ratio

    calls: list[int] = []

    def run(attempt: int) -> list[Ratio]:
        calls.append(attempt)
        return [Ratio("x", values[attempt - 1], 1.0, 1.5)]
    return calls, run


def test_a_check_past_its_limit_is_measured_again_and_the_passing_try_is_reported(capsys) -> None:
    from benchmarks.quick import measured_again

    calls, run = _tries([2.0, 1.2, 9.0])
    assert [r.value for r in measured_again(run)] == [1.2]
    assert calls == [1, 2]
    assert capsys.readouterr().out == "try 1 of at most 3: check: x: 2 / 1 = 2.000 (at most 1.5): REGRESSION\n"


def test_a_check_past_its_limit_in_every_try_fails_with_the_last_one() -> None:
    from benchmarks.quick import measured_again

    calls, run = _tries([2.0, 3.0, 4.0])
    ratios = measured_again(run)
    assert calls == [1, 2, 3] and [(r.value, r.ok) for r in ratios] == [(4.0, False)]
