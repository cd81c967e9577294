"""Peak memory and time of a calibrated convolutional optimization, as a user runs it.

    python -m benchmarks.build_memory                  # print the section
    python -m benchmarks.build_memory --write          # also replace it in BENCHMARKS.md
    python -m benchmarks.build_memory --pages 32 --size 320x480 --target x86-cpu
    python -m benchmarks.build_memory --quick --check   # seconds: a small conv net, 8 pages vs 64

The model is PP-OCRv4's text detector from the `rapidocr-onnxruntime` package (a real conv
net with dynamic height and width; `pip install --no-deps rapidocr-onnxruntime`). Its
calibration file holds text pages made by `vision.text_pages` (lines of words drawn with
Pillow's built-in font), cut to the size asked. `mlpack optimize` runs in a child process; its peak
resident memory is what the kernel reports for that child (`wait4`'s ru_maxrss), and its
time is the wall clock around it. Nothing else runs in the child.

Goal (the section tracks memory): the optimizer streams calibration rows in bounded
batches, so its peak memory does not grow with the calibration set. `--quick` optimizes a
small convolutional net (two 3x3 convolutions, dynamic height and width; onnx.helper) with
QUICK_PAGES[0] and then QUICK_PAGES[1] pages of QUICK_SIZE and QUICK_TIMING_S of latency
timing, and checks how much the peak RSS grew against how much the calibration data grew:
at most QUICK_LIMIT times. Holding the data once or twice stays under it; holding every
row's activations at once (what streaming in bounded batches prevents) does not: the first
convolution's output alone is 16/3 = 5.3 times its input. Not checked here: the page size's
effect at a fixed batch (the full run's 320x480 pages, and its BEFORE figure).
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

from benchmarks.child import optimize_command, run_child
from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, add_options, report
from benchmarks.vision import text_pages

HEADING = "Build memory (calibrated convolutional model)"
# A fixed past measurement, for comparison: this script run (PYTHONPATH) on the package of commit ecbf7e3,
# before the optimizer streamed rows and capped the timed batch; not re-measured by --write.
BEFORE = ("Before the optimizer streamed rows in bounded batches (commit ecbf7e3, measured once with this script "
          "on 2026-12-04 on the same machine, on the pages of digits it drew then): 5298 MB peak, 113 s, float "
          "chosen. The peak was the latency timing at batch 32: every candidate's session held the activations of 32 pages at once.")
COMMAND = "python -m benchmarks.build_memory --write"
QUICK_PAGES, QUICK_SIZE, QUICK_TIMING_S = (8, 64), (192, 192), 0.5
QUICK_LIMIT = 3.0  # bytes of peak RSS growth per byte of calibration data added


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float
    chosen: str
    variants: str  # each candidate and its gate verdict
    mixed: str  # what mixed-int8 kept float, or why it made nothing


def detector(folder: Path) -> Path:
    """The detector file only: importing the package would pull in OpenCV."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark needs: pip install --no-deps rapidocr-onnxruntime")
    package = Path(next(iter(spec.submodule_search_locations)))
    return Path(shutil.copyfile(package / "models" / "ch_PP-OCRv4_det_infer.onnx", folder / "det.onnx"))


def pages(count: int, height: int, width: int) -> np.ndarray:
    side = max(height, width)
    return np.ascontiguousarray(text_pages(count, 0, side)[:, :, :height, :width])


def measure(model: Path, data: Path, target: str, out: Path, timing_budget_s: float | None = None) -> Measured:
    command = optimize_command(model, target, out, "--calibration", str(data), "--force",
                               timing_budget_s=timing_budget_s)
    done = run_child(command, out.parent / "optimize.log")
    if done.returncode:
        raise SystemExit(f"mlpack optimize failed: {done.output[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    variants = ", ".join(f"{c['name']} {'pass' if c['passed'] else 'FAIL'}" for c in report["candidates"])
    mixed = next((c["recipe"] for c in report["candidates"] if c["name"] == "mixed-int8"), None) or \
        next((f"not made: {s['why']}" for s in report["skipped"] if s["name"] == "mixed-int8"), "not run")
    return Measured(done.seconds, done.peak_mb, report["chosen"], variants, mixed)


def small_detector(path: Path) -> Path:
    """x [batch, 3, H, W] (PP-OCR's input name) -> Conv 3x3 (16) -> Relu -> Conv 3x3 (1) -> Sigmoid -> map [batch, 1, H, W]:
    a text-probability map in miniature, random weights, fixed seed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"k1": rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3,
               "b1": np.zeros(16, np.float32),
               "k2": rng.standard_normal((1, 16, 3, 3)).astype(np.float32) * 0.1,
               "b2": np.zeros(1, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "k2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c2"], ["map"])]
    graph = helper.make_graph(
        nodes, "small_detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def quick(target: str) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="mlpack-build-memory-quick-") as tmp:
        folder = Path(tmp)
        model = small_detector(folder / "det.onnx")
        runs = {}
        for count in QUICK_PAGES:
            np.savez(folder / f"pages{count}.npz", x=pages(count, *QUICK_SIZE))
            runs[count] = measure(model, folder / f"pages{count}.npz", target, folder / f"out{count}", QUICK_TIMING_S)
            print(f"{count} pages of {QUICK_SIZE[0]}x{QUICK_SIZE[1]}: peak {runs[count].peak_mb:.0f} MB, "
                  f"{runs[count].seconds:.1f} s, chose {runs[count].chosen} ({runs[count].variants})")
    few, many = (runs[c].peak_mb * 2**20 for c in QUICK_PAGES)
    added = (QUICK_PAGES[1] - QUICK_PAGES[0]) * 3 * QUICK_SIZE[0] * QUICK_SIZE[1] * 4  # float32 pages
    return [Ratio(f"optimize's peak RSS growth from {QUICK_PAGES[0]} to {QUICK_PAGES[1]} pages / the calibration "
                  "data's growth (bytes)", max(many - few, 1.0), added, QUICK_LIMIT)]


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
        f"worst 1, 2, 4... nodes float; here mixed-int8: {m.mixed}). Timings move with the machine's load; "
        "the memory figure is the one this section tracks.", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=32)
    parser.add_argument("--size", default="320x480", help="HEIGHTxWIDTH of each page")
    parser.add_argument("--target", default="x86-cpu")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    add_options(parser)
    args = parser.parse_args()
    if args.quick:
        return report(quick(args.target), args.check)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
