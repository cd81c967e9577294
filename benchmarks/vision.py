"""PP-OCRv4's text detector and recognizer through `mlpack optimize`, beside onnxruntime's and NNCF's recipes.

    python -m benchmarks.vision                   # both models, print the section
    python -m benchmarks.vision --write           # also replace it in BENCHMARKS.md
    python -m benchmarks.vision --only det        # or rec
    python -m benchmarks.vision --quick --check   # a minute: a small conv net, the same comparison
    python -m benchmarks.vision --spinning        # the recognizer timed in turn, threads spinning or not

The models are the ones PyPI's `rapidocr-onnxruntime` ships (`pip install --no-deps
rapidocr-onnxruntime`): the detector (DB, dynamic height and width, weights in Constant
nodes) and the recognizer (CTC over 6,625 characters, 48 pixels high).

The data is made here, nothing is downloaded: lines of words from the standard library's
docstrings drawn with Pillow's built-in font, at random sizes, inks and paper shades; pages of
PAGE x PAGE for the detector, crops of LINE_HEIGHT x LINE_WIDTH for the recognizer. The file
given to `--calibration` holds CALIBRATION rows made with seed 1, then GATE rows with seed 2:
the optimizer calibrates on the first quarter of the file and gates on the rest, so the
images it calibrates on and those it is judged on differ. A third set (seed 3, CHECK rows),
which the optimizer never sees, checks each model with plain onnxruntime on what the model
is for: the detector's text mask (probability > 0.3, DB's binarization threshold) as IoU with
float's mask, the recognizer's greedy CTC reading (best class per step, repeats merged,
blanks dropped) as the share of lines read exactly as float reads them.

Each build runs as a user runs it, `mlpack optimize MODEL --target x86-cpu --calibration
FILE`, in a child process: its wall time and peak RSS. The reference is the recipe
onnxruntime's documentation shows for CNNs: `quant_pre_process`, then `quantize_static`
(QDQ, int8 weights per channel, its default operator types), calibrated on the same rows;
and NNCF's `quantize_with_accuracy_control` (benchmarks/reference_recipes.py), calibrated on
the same rows and validated with mlpack's gate on the gate rows. Latency: float, mlpack's
pick and the references timed round-robin in one process
(`mlpack.optimize.measure.latencies`), at batch 1 and 8.

Goal (issue 20): on each model, at equal or better accuracy, mlpack's pick is at least as small
and as fast as the reference. Every model also goes through mlpack's gate (the model's `--gate`
options) on the held-out images: a reference the gate refuses is not at equal accuracy, and
the verdict says so instead of comparing sizes with it. `--quick` runs the same comparison on a small conv net (build_memory's
`small_detector`) with QUICK_PAGES pages of QUICK_SIZE: it checks the pick's held-out mask IoU
against the reference's (the reference's at most QUICK_IOU_BAND times the pick's: on a random-weight
net either may be a little ahead; 0.9997 against 0.9979 here) and its batch-1 latency (at most
QUICK_LIMIT times the reference's: a two-layer net is all overhead, so only a gross loss shows).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.child import optimize_command, run_child
from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, add_options, report

ROOT = Path(__file__).resolve().parent.parent
HEADING = "Vision models (PP-OCRv4)"
COMMAND = "python -m benchmarks.vision --write"
TARGET = "x86-cpu"
PAGE, LINE_HEIGHT, LINE_WIDTH = 256, 48, 320
CALIBRATION, GATE, CHECK = 32, 96, 32  # CALIBRATION is a quarter of the file: what the optimizer calibrates on
MASK_THRESHOLD = 0.3  # DB's binarization threshold (PaddleOCR's det_db_thresh)
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
QUICK_PAGES, QUICK_SIZE, QUICK_LIMIT = 32, 64, 1.5
QUICK_IOU_BAND = 1.01  # a random-weight net: the pick, gated on cosine, may trail the reference a little
BATCHES = (1, 8)
LOUD_EFFECT = 0.05  # a node whose int8 rounding alone moves the output this much (relative L2) is counted


def _words() -> list[str]:
    import inspect
    import json as json_module
    import os
    import textwrap

    text = " ".join(module.__doc__ or "" for module in (json_module, os, textwrap, inspect, re))
    return re.findall(r"[A-Za-z][A-Za-z0-9,.'-]{1,14}", text)


def _draw_lines(width: int, height: int, rng: np.random.Generator, words: list[str], one_line: bool):
    from PIL import Image, ImageDraw, ImageFont

    paper = tuple(int(v) for v in rng.integers(190, 256, 3))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    y = 0 if one_line else int(rng.integers(4, 20))
    while y < height - 20 or (one_line and y == 0):
        size = int(rng.integers(26, 34)) if one_line else int(rng.integers(12, 28))
        font = ImageFont.load_default(size=size)
        line = " ".join(rng.choice(words, int(rng.integers(1, 4) if one_line else rng.integers(2, 6))))
        ink = tuple(int(v) for v in rng.integers(0, 80, 3))
        x = int(rng.integers(2, 12)) if one_line else int(rng.integers(2, width // 3))
        draw.text((x, (height - size) // 2 - 2 if one_line else y), line, fill=ink, font=font)
        if one_line:
            break
        y += size + int(rng.integers(6, 30))
    return np.asarray(image, np.float32) / 255.0


def text_pages(count: int, seed: int, size: int = PAGE) -> np.ndarray:
    """Pages of text lines, normalised as PP-OCR's detector expects (ImageNet mean and std, NCHW)."""
    rng, words = np.random.default_rng(seed), _words()
    pages = [(_draw_lines(size, size, rng, words, one_line=False) - MEAN) / STD for _ in range(count)]
    return np.stack(pages).transpose(0, 3, 1, 2).astype(np.float32)


def text_lines(count: int, seed: int) -> np.ndarray:
    """Crops of one line of words, normalised as PP-OCR's recognizer expects ((x - 0.5) / 0.5, NCHW)."""
    rng, words = np.random.default_rng(seed), _words()
    lines = [(_draw_lines(LINE_WIDTH, LINE_HEIGHT, rng, words, one_line=True) - 0.5) / 0.5 for _ in range(count)]
    return np.stack(lines).transpose(0, 3, 1, 2).astype(np.float32)


def packaged_model(name: str, folder: Path) -> Path:
    """One model file of the package (importing it would pull in OpenCV)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark needs: pip install --no-deps rapidocr-onnxruntime")
    package = Path(next(iter(spec.submodule_search_locations)))
    return Path(shutil.copyfile(package / "models" / name, folder / name))


def mask_iou(reference: np.ndarray, got: np.ndarray) -> float:
    """Mean over rows of the IoU of the text masks (probability > MASK_THRESHOLD)."""
    a = reference.reshape(len(reference), -1) > MASK_THRESHOLD
    b = got.reshape(len(got), -1) > MASK_THRESHOLD
    union = (a | b).sum(axis=1)
    return float(np.mean(np.where(union > 0, (a & b).sum(axis=1) / np.maximum(union, 1), 1.0)))


def ctc_readings(probabilities: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC: the best class per time step, repeats merged, blanks (class 0) dropped."""
    readings = []
    for steps in probabilities.argmax(axis=-1):
        merged = [int(c) for i, c in enumerate(steps) if c != 0 and (i == 0 or c != steps[i - 1])]
        readings.append(tuple(merged))
    return readings


def same_reading(reference: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([a == b for a, b in zip(ctc_readings(reference), ctc_readings(got))]))


@dataclass
class Model:
    key: str
    title: str
    file: str
    make: object  # (count, seed) -> inputs
    metric: object  # (float outputs, outputs) -> score in [0, 1]
    metric_name: str
    options: tuple[str, ...] = ()  # what a user of this model adds to `mlpack optimize`


ORT, NNCF = "onnxruntime static", "nncf-qwac"
ROW_LABELS = {ORT: "onnxruntime quant_pre_process + quantize_static",
              NNCF: "NNCF quantize_with_accuracy_control"}

MODELS = {
    "det": Model("det", "text detector", "ch_PP-OCRv4_det_infer.onnx", text_pages, mask_iou,
                 f"text-mask IoU with float (probability > {MASK_THRESHOLD})"),
    "rec": Model("rec", "text recognizer", "ch_PP-OCRv4_rec_infer.onnx", text_lines, same_reading,
                 "lines read exactly as float reads them (greedy CTC)", ("--gate", "task=ctc")),
}


def nncf_reference(model: Path, calibration: np.ndarray, gate_rows: np.ndarray, options: tuple[str, ...],
                   dst: Path) -> tuple[Path | None, str]:
    """NNCF's quantize_with_accuracy_control (benchmarks/reference_recipes.py) calibrated on the
    same images, validated with mlpack's gate (the model's `--gate` options) on the gate
    images, or None and why it failed (in one line)."""
    from benchmarks.reference_recipes import HeldOutGate, nncf_qwac
    from mlpack.optimize.data import EvalData
    from mlpack.optimize.measure import outputs, session
    from mlpack.targets import load_target

    target = load_target(TARGET)
    name = _input_name(model)
    held_out = EvalData({name: gate_rows}, None, f"{len(gate_rows)} gate images", False)
    float_session = session(model, target)
    gate = HeldOutGate(held_out, outputs(float_session, held_out), [o.name for o in float_session.get_outputs()],
                       _gate(options),
                       lambda path, rows: outputs(session(path, target, as_recipe=True), rows))
    try:
        nncf_qwac(model, EvalData({name: calibration}, None, "calibration images", False), dst, gate)
    except Exception as exc:  # the recipe is what is measured: its failure is a result
        return None, f"NNCF's recipe fails: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return dst, (f"onnx's version converter to opset 13, then NNCF quantize_with_accuracy_control (ONNX backend) "
                 f"calibrated on the {len(calibration)} "
                 f"calibration images, validated with mlpack's gate on the {len(gate_rows)} gate images, "
                 f"max_drop {gate.max_drop():g} absolute")


def _gate(options: tuple[str, ...]):
    """mlpack's gate settings from a model's `mlpack optimize` options (its `--gate KEY=VALUE`s)."""
    from mlpack.cli.options import gate_settings

    return gate_settings([value for flag, value in zip(options[::2], options[1::2]) if flag == "--gate"])


def ort_static(model: Path, rows: np.ndarray, dst: Path) -> tuple[Path | None, str]:
    """onnxruntime's own recipe for CNNs (benchmarks/reference_recipes.py), or None and why it
    failed (in one line)."""
    from benchmarks.reference_recipes import ort_static_recipe

    name = _input_name(model)
    try:
        return dst, ort_static_recipe(model, ({name: row[None]} for row in rows), dst)
    except Exception as exc:  # the recipe is what is measured: its failure is a result
        return None, f"onnxruntime's static recipe fails: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def _input_name(model: Path) -> str:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


@dataclass
class Row:
    name: str
    size_bytes: int
    score: float
    latency_ms: dict[int, float]
    gate: str = ""  # mlpack's gate on the held-out rows: "pass", or "FAIL: why"


def compare(model: Path, shipped: Path, references: dict[str, Path], check: np.ndarray, metric, budget_s: float,
            options: tuple[str, ...] = ()) -> list[Row]:
    """Float, mlpack's pick and the references (ROW_LABELS' keys) on the held-out rows, each
    through mlpack's gate (with the model's `--gate` options) there too, then timed round-robin."""
    from mlpack.model.files import model_paths
    from mlpack.optimize.data import EvalData
    from mlpack.optimize.gate import compare as gate_compare
    from mlpack.optimize.measure import latencies, outputs, session
    from mlpack.targets import load_target

    target = load_target(TARGET)
    name = _input_name(model)
    paths = {"float": model, "mlpack": shipped} | references
    sessions = {key: session(path, target, as_recipe=key in references) for key, path in paths.items()}
    data = EvalData({name: check}, None, "check rows", False)
    got = {key: outputs(sess, data)[0] for key, sess in sessions.items()}
    settings = _gate(options)
    output = sessions["float"].get_outputs()[0].name
    gates = {key: gate_compare([got["float"]], [value], [output], settings) for key, value in got.items()}
    timed = {batch: latencies(sessions, data, batch, budget_s=budget_s / len(BATCHES)) for batch in BATCHES}
    return [Row(key, sum(p.stat().st_size for p in model_paths(path)), metric(got["float"], got[key]),
                {batch: timed[batch][key].p50_ms for batch in BATCHES},
                "pass" if gates[key].passed else f"FAIL: {gates[key].reason}") for key, path in paths.items()]


@dataclass
class Result:
    model: Model
    seconds: float
    peak_mb: float
    report: dict
    rows: list[Row]
    reference_notes: dict[str, str]  # reference key -> what was run, or why it failed


def run_model(model: Model, folder: Path, budget_s: float) -> Result:
    folder.mkdir(parents=True, exist_ok=True)
    path = packaged_model(model.file, folder)
    calibration, gate = model.make(CALIBRATION, 1), model.make(GATE, 2)
    data = folder / "calibration.npz"
    name = _input_name(path)
    np.savez(data, **{name: np.concatenate([calibration, gate])})
    out = folder / "optimized"
    print(f"{model.key}: mlpack optimize on {CALIBRATION} + {GATE} rows ...", file=sys.stderr)
    done = run_child(optimize_command(path, TARGET, out, "--calibration", str(data), "--force", *model.options),
                     folder / "optimize.log")
    if done.returncode:
        raise SystemExit(f"mlpack optimize failed: {done.output[-2000:]}")
    report_json = json.loads((out / "report.json").read_text())
    made = {ORT: ort_static(path, calibration, folder / "ort-static.onnx")}
    print(f"{model.key}: NNCF quantize_with_accuracy_control ...", file=sys.stderr)
    made[NNCF] = nncf_reference(path, calibration, gate, model.options, folder / "nncf-qwac.onnx")
    print(f"{model.key}: comparing on {CHECK} held-out rows and timing ...", file=sys.stderr)
    rows = compare(path, out / "model.onnx", {key: p for key, (p, _) in made.items() if p is not None},
                   model.make(CHECK, 3), model.metric, budget_s, model.options)
    return Result(model, done.seconds, done.peak_mb, report_json, rows, {key: note for key, (_, note) in made.items()})


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def markdown(results: list[Result]) -> str:
    import onnxruntime

    out = [f"## {HEADING}", "",
           f"Made by `{COMMAND}` on {platform.machine()} Linux, 2 cores shared with other work, onnxruntime "
           f"{onnxruntime.__version__}, {time.strftime('%Y-%m-%d')}. The models PyPI's `rapidocr-onnxruntime` ships, "
           f"built for {TARGET} with `mlpack optimize --calibration` on images this script draws (Pillow's built-in "
           f"font, words from the standard library's docstrings): {CALIBRATION} calibration images (seed 1) and "
           f"{GATE} gate images (seed 2) in one file, then every model checked with plain onnxruntime on {CHECK} "
           "held-out images (seed 3). The references are onnxruntime's recipe for CNNs and NNCF's "
           "quantize_with_accuracy_control (validated with mlpack's gate on the gate images), calibrated on the same "
           "images; every model also goes through mlpack's gate on the held-out images. Latency: p50, timed "
           "round-robin in one process.", ""]
    for r in results:
        float_row = r.rows[0]
        chosen = r.report["chosen"]
        out += [f"### PP-OCRv4 {r.model.title}", "",
                f"`mlpack optimize{''.join(' ' + o for o in r.model.options)}`: {r.seconds:.0f} s, peak RSS "
                f"{r.peak_mb:.0f} MB; ships `{chosen}`: {r.report['why']}.",
                "", f"| model | size | vs float | {r.model.metric_name} | mlpack's gate, held-out | "
                + " | ".join(f"p50 b{b} | vs float" for b in BATCHES) + " |",
                "|---|---:|---:|---:|---|" + "---:|---:|" * len(BATCHES)]
        for row in r.rows:
            label = {"float": "float (as shipped in the package)", "mlpack": f"mlpack's pick (`{chosen}`)",
                     **ROW_LABELS}[row.name]
            cells = " | ".join(f"{row.latency_ms[b]:.1f} ms | {row.latency_ms[b] / float_row.latency_ms[b]:.2f}x"
                               for b in BATCHES)
            out.append(f"| {label} | {_mb(row.size_bytes)} | {row.size_bytes / float_row.size_bytes:.2f}x | "
                       f"{row.score:.4f} | {row.gate.split(':')[0]} | {cells} |")
        out += ["", *verdict(r), ""]
        out += ["mlpack's candidates (gate on the seed-2 images):", ""]
        out += [f"- `{c['name']}`: {'pass' if c['passed'] else 'FAIL'}, {c.get('recipe', '')}"
                for c in r.report["candidates"]]
        out += [f"- `{s['name']}` not made: {s['why']}" for s in r.report["skipped"] if s["name"] == "mixed-int8"]
        out += layer_effects(r.report)
        compared = {row.name for row in r.rows}
        out += [f"- reference {ROW_LABELS[key]}: {note}" if key in compared else
                f"- reference {ROW_LABELS[key]} not compared: {note}" for key, note in r.reference_notes.items()]
        out += [""]
    return "\n".join(out)


def layer_effects(report: dict, loud: float = LOUD_EFFECT) -> list[str]:
    """What mixed-int8 measured, layer by layer: each node the int8 recipe quantized, alone in
    int8, and the relative L2 error of the model's output it causes (report.json)."""
    layers = report.get("sensitive_layers") or []
    if not layers:
        return []
    worst = ", ".join(f"`{layer['node']}` {layer['int8_relative_error']:.3f}" for layer in layers[:5])
    count = sum(layer["int8_relative_error"] > loud for layer in layers)
    return [f"- layer by layer (each quantized node alone in int8, the relative error of the output it causes): "
            f"{count} of {len(layers)} above {loud}; the worst {worst}"]


def verdict(r: Result) -> list[str]:
    """Issue 20's goal: at equal or better accuracy, as small and as fast (within 10%) as the
    best reference; only references that pass mlpack's gate on the held-out images count."""
    rows = {row.name: row for row in r.rows}
    pick = rows["mlpack"]
    refs = [rows[key] for key in ROW_LABELS if key in rows]
    if not refs:
        return ["Goal not assessable: no reference recipe ran."]
    passing = [ref for ref in refs if ref.gate == "pass"]
    metric = r.model.metric_name
    failing = "; ".join(f"{ROW_LABELS[ref.name]} fails it ({ref.gate[len('FAIL: '):]}; {metric} {ref.score:.4f})"
                        for ref in refs if ref.gate != "pass")
    if not passing:
        return [f"Goal (as small and as fast as the best reference at equal or better accuracy): "
                f"{'**met**' if pick.gate == 'pass' else '**not met**'}: no reference is as accurate, none passes "
                f"mlpack's gate on the held-out images: {failing}. mlpack's pick {metric} {pick.score:.4f} "
                f"({'passes' if pick.gate == 'pass' else 'fails'} it), "
                + ", ".join(f"{pick.size_bytes / ref.size_bytes:.2f}x the size of {ROW_LABELS[ref.name]}" for ref in refs)
                + "."]
    accurate = pick.gate == "pass" and all(pick.score >= ref.score for ref in passing)
    small = pick.size_bytes <= min(ref.size_bytes for ref in passing) * 1.1
    best = {b: min(ref.latency_ms[b] for ref in passing) for b in BATCHES}
    fast = all(pick.latency_ms[b] <= best[b] * 1.1 for b in BATCHES)
    met = accurate and small and fast
    return [f"Goal (at least as accurate as every reference that passes mlpack's gate on the held-out images, and "
            f"as small and as fast as the best of them, within 10%): {'**met**' if met else '**not met**'}: "
            f"{metric} {pick.score:.4f} against " + ", ".join(f"{ref.score:.4f} ({ROW_LABELS[ref.name]})" for ref in passing)
            + f"; size {pick.size_bytes / min(ref.size_bytes for ref in passing):.2f}x the smallest of them, p50 "
            + ", ".join(f"b{b} {pick.latency_ms[b] / best[b]:.2f}x" for b in BATCHES) + " the fastest"
            + (f". Not counted: {failing}." if failing else ".")]


def quick() -> list[Ratio]:
    from benchmarks.build_memory import small_detector  # build_memory draws its pages with this module

    with tempfile.TemporaryDirectory(prefix="mlpack-vision-quick-") as tmp:
        folder = Path(tmp)
        model = small_detector(folder / "det.onnx")
        calibration = text_pages(QUICK_PAGES // 4, 1, QUICK_SIZE)
        np.savez(folder / "pages.npz", x=np.concatenate([calibration, text_pages(QUICK_PAGES - len(calibration), 2,
                                                                                 QUICK_SIZE)]))
        done = run_child(optimize_command(model, TARGET, folder / "out", "--calibration", str(folder / "pages.npz"),
                                          timing_budget_s=0.5), folder / "optimize.log")
        if done.returncode:
            raise SystemExit(f"mlpack optimize failed: {done.output[-2000:]}")
        reference, note = ort_static(model, calibration, folder / "ort.onnx")
        if reference is None:
            raise SystemExit(note)
        rows = {row.name: row for row in compare(model, folder / "out" / "model.onnx", {ORT: reference},
                                                 text_pages(16, 3, QUICK_SIZE), mask_iou, 2.0)}
    pick, ref = rows["mlpack"], rows[ORT]
    print(f"pick: IoU {pick.score:.4f}, {pick.latency_ms[1]:.3f} ms; reference: IoU {ref.score:.4f}, "
          f"{ref.latency_ms[1]:.3f} ms")
    return [Ratio("held-out mask IoU: onnxruntime quantize_static / the pick", ref.score, pick.score,
                  QUICK_IOU_BAND),
            Ratio("batch-1 p50 latency: the pick / onnxruntime quantize_static (ms)", pick.latency_ms[1],
                  ref.latency_ms[1], QUICK_LIMIT)]


def spinning(budget_s: float) -> str:
    """Why the optimizer's timed sessions stop spinning (mlpack.optimize.measure.latencies): the
    recognizer, three sessions of it timed in turn with onnxruntime's default (idle threads spin
    on after a run) and with `force_spinning_stop`, and one session alone; p50 ms per batch size."""
    from mlpack.optimize.data import EvalData
    from mlpack.optimize.measure import latencies
    from mlpack.runtime.config import open_session

    with tempfile.TemporaryDirectory(prefix="mlpack-vision-spin-") as tmp:
        model = packaged_model(MODELS["rec"].file, Path(tmp))
        data = EvalData({_input_name(model): text_lines(8, 3)}, None, "check rows", False)
        ways = {"three sessions in turn, onnxruntime's default": ({}, 3),
                "three sessions in turn, force_spinning_stop": ({"force_spinning_stop": True}, 3),
                "one session alone, onnxruntime's default": ({}, 1)}
        rows = ["| sessions | " + " | ".join(f"p50 b{b}" for b in BATCHES) + " |",
                "|---|" + "---:|" * len(BATCHES)]
        for label, (settings, count) in ways.items():
            sessions = {str(i): open_session(model, settings) for i in range(count)}
            p50 = {b: np.median([t.p50_ms for t in latencies(sessions, data, b, budget_s=budget_s).values()])
                   for b in BATCHES}
            rows.append(f"| {label} | " + " | ".join(f"{p50[b]:.1f} ms" for b in BATCHES) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of latency timing per model")
    parser.add_argument("--spinning", action="store_true",
                        help="only time the recognizer in turn with its threads spinning or not (prints a table)")
    add_options(parser)
    args = parser.parse_args()
    if args.spinning:
        print(spinning(args.budget / len(BATCHES)))
        return 0
    if args.quick:
        return report(quick(), args.check)
    with tempfile.TemporaryDirectory(prefix="mlpack-vision-") as tmp:
        results = [run_model(MODELS[key], Path(tmp) / key, args.budget)
                   for key in MODELS if args.only in (None, key)]
    text = markdown(results)
    print(text)
    if args.write:
        write_section(HEADING, text, ROOT / "BENCHMARKS.md")
        print(f"wrote the {HEADING!r} section of {ROOT / 'BENCHMARKS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
