"""Running a benchmark's `--quick --check` (benchmarks/quick.py) from a test, for
tests/test_benchmarks_quick.py and for the test files whose fixtures hold what a quick run
measures (tests/test_image.py's built images)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_check(name: str, *options: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--check", *options], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    checks = [line for line in done.stdout.splitlines() if line.startswith("check: ")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert checks and all(line.endswith(": ok") for line in checks), checks
