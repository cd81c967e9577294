"""Every `benchmarks/` script with a quick mode runs it here, in seconds: `--quick --check`
measures each figure beside its baseline in the same run and fails when a ratio passes the
goal its section of BENCHMARKS.md states (benchmarks/quick.py). The scripts without one
yet are listed, with why, and the list is checked against the scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICK = ["agent_bench", "request_memory"]
# Scripts without a quick mode yet: each needs builds, servers or images that take minutes.
NO_QUICK_MODE_YET = {
    "gpu": "needs a GPU host; its CPU-side steps run in tests/test_benchmark_gpu.py",
    "build_memory": "builds the OCR detector with calibration images (minutes, gigabytes)",
    "fault_table": "its --check runs on recorded results; tests/test_fault_table.py checks the table",
    "image_sizes": "builds container images (minutes)",
    "lambda_cold_start": "builds Lambda zips, then starts them 10 times each",
    "large_model": "runs mlpack optimize on a generated model",
    "optimize_bench": "optimizes MiniLM and the OCR detector (issue 20 is changing the optimizer)",
    "serve_protocols": "builds and serves a Bento",
    "serve_throughput": "builds and serves Bentos",
    "text_processing": "builds and serves the MiniLM Bento",
}
HELPERS = {"__init__", "markdown", "quick", "minilm_model"}  # imported by the scripts, not run


def test_every_benchmark_script_has_a_quick_check_or_says_why_not() -> None:
    scripts = {p.stem for p in (REPO / "benchmarks").glob("*.py")} - HELPERS
    assert scripts == set(QUICK) | set(NO_QUICK_MODE_YET)
    for name in QUICK:
        assert "--quick --check" in (REPO / "benchmarks" / f"{name}.py").read_text(), name


@pytest.mark.parametrize("name", QUICK)
def test_the_quick_check_passes(name: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    checks = [line for line in done.stdout.splitlines() if line.startswith("check: ")]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert checks and all(line.endswith(": ok") for line in checks), checks
