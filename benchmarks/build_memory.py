"""Peak memory and time of a calibrated convolutional optimization, as a user runs it.

    python -m benchmarks.build_memory                  # print the section
    python -m benchmarks.build_memory --write          # also replace it in BENCHMARKS.md
    python -m benchmarks.build_memory --pages 32 --size 320x480 --target x86-cpu

The model is PP-OCRv4's text detector from the `rapidocr-onnxruntime` package (a real conv
net with dynamic height and width; `pip install --no-deps rapidocr-onnxruntime`). Its
calibration file holds text pages made by `optimize_bench.ocr_images` (digits drawn as lines
of text), cut to the size asked. `mlpack optimize` runs in a child process; its peak
resident memory is what the kernel reports for that child (`wait4`'s ru_maxrss), and its
time is the wall clock around it. Nothing else runs in the child.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.child import run_child
from benchmarks.markdown import write_section
from benchmarks.optimize_bench import ocr_images

HEADING = "Build memory (calibrated convolutional model)"
# A fixed past measurement, for comparison: this script run (PYTHONPATH) on the package of commit ecbf7e3,
# before the optimizer streamed rows and capped the timed batch; not re-measured by --write.
BEFORE = ("Before the optimizer streamed rows in bounded batches (commit ecbf7e3, measured once with this script "
          "on 2026-12-04 on the same machine): 5298 MB peak, 113 s, float chosen. The peak was the latency "
          "timing at batch 32: every candidate's session held the activations of 32 pages at once.")
COMMAND = "python -m benchmarks.build_memory --write"


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float
    chosen: str
    variants: str  # each candidate and its gate verdict


def detector(folder: Path) -> Path:
    """The detector file only: importing the package would pull in OpenCV."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark needs: pip install --no-deps rapidocr-onnxruntime")
    package = Path(next(iter(spec.submodule_search_locations)))
    return Path(shutil.copyfile(package / "models" / "ch_PP-OCRv4_det_infer.onnx", folder / "det.onnx"))


def pages(count: int, height: int, width: int) -> np.ndarray:
    side = max(height, width)
    return np.ascontiguousarray(ocr_images(count, side)[:, :, :height, :width])


def measure(model: Path, data: Path, target: str, out: Path) -> Measured:
    command = [sys.executable, "-c", "from mlpack.cli import main; main()", "optimize", str(model), "--target", target,
               "--calibration", str(data), "--out", str(out), "--force"]
    done = run_child(command, out.parent / "optimize.log")
    if done.returncode:
        raise SystemExit(f"mlpack optimize failed: {done.output[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    variants = ", ".join(f"{c['name']} {'pass' if c['passed'] else 'FAIL'}" for c in report["candidates"])
    return Measured(done.seconds, done.peak_mb, report["chosen"], variants)


def markdown(m: Measured, count: int, height: int, width: int, target: str, revision: str) -> str:
    import onnxruntime

    return "\n".join([
        f"## {HEADING}", "",
        f"`{COMMAND}` (mlpack {revision}, onnxruntime {onnxruntime.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} cores): `mlpack optimize` of PP-OCRv4's text detector (4.7 MB, dynamic height and "
        f"width) for {target} with `--calibration` of {count} text pages of {height}x{width}, in a child "
        "process.", "",
        "| peak memory (RSS) | wall time | chosen | candidates |",
        "|---:|---:|---|---|",
        f"| {m.peak_mb:.0f} MB | {m.seconds:.0f} s | {m.chosen} | {m.variants} |", "",
        BEFORE, "",
        "The time includes mixed-int8's search (each quantized node's effect measured, then int8 with the "
        "worst 1, 2, 4... nodes float): on this model no count short of all nodes passes the gate. Timings "
        "move with the machine's load; the memory figure is the one this section tracks.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=32)
    parser.add_argument("--size", default="320x480", help="HEIGHTxWIDTH of each page")
    parser.add_argument("--target", default="x86-cpu")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    with tempfile.TemporaryDirectory(prefix="mlpack-build-memory-") as tmp:
        folder = Path(tmp)
        model = detector(folder)
        np.savez(folder / "pages.npz", x=pages(args.pages, height, width))
        measured = measure(model, folder / "pages.npz", args.target, folder / "out")
    text = markdown(measured, args.pages, height, width, args.target, revision)
    print(text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
