"""Models over 2 GB: writes the "Models over 2 GB" section of BENCHMARKS.md.

    python -m benchmarks.large_model                 # 2.3 GiB model: measure, print, update BENCHMARKS.md
    python -m benchmarks.large_model --rows 2000 --no-write   # a 24 MB model: check the mechanics only
    python -m benchmarks.large_model --quick --check          # two small models: memory per model byte

Generates, in a temporary folder, a model whose weights no protobuf message can hold:
`ids [batch, 8]` -> a Gather from each of TABLES float32 tables [ROWS, 1024] -> Sum ->
ReduceMean -> MatMul -> `features [batch, 16]` (3 tables of 200,000 rows: 2.29 GiB, each
table 0.76 GiB, written tensor by tensor as external data). Then runs `mlpack optimize`
on it for x86-cpu in a child process, and reports: wall time, the child's peak RSS, each
candidate's size and gate verdict, whether the chosen model kept its weights external,
and that it loads in the serving runtime and answers as float does (cosine on 64 rows).
Needs about 3x the model's size in free disk and 6x in memory.

Goal: `mlpack optimize` needs at most MEMORY_PER_BYTE bytes of memory per byte of model
(5.3 at 2.3 GB), keeps the weights external, and the pick answers as float does. At a
quick size the interpreter and onnxruntime outweigh the model, so `--quick` optimizes two
small models (QUICK_ROWS rows per table: 12 MB and 49 MB) and checks the growth of the
child's peak RSS between them per byte the model grew, against the same limit, with
QUICK_TIMING_S of latency timing (which costs time, not memory); each pick must stay
external and answer as float (cosine at least MIN_COSINE).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.child import optimize_command, run_child
from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, add_options, report

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Models over 2 GB"
WIDTH = 1024
# Round-robin timing holds every timed candidate's session open. stored-int8's would hold float's
# weights once loaded, one model more (the quick check read 5.6-6.0 with it, 4.9-5.0 without), so
# it is not timed: its session runs float's graph, and its latency is float's (pipeline._time_all).
MEMORY_PER_BYTE = 6.0
MIN_COSINE = 0.99
QUICK_ROWS = (1_000, 4_000)
QUICK_TIMING_S = 1.0


def make_model(folder: Path, tables: int, rows: int) -> Path:
    """Write the model with its tables as external data, one table in memory at a time."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    data = folder / "large.onnx.data"
    initializers, offset = [], 0
    with data.open("wb") as fh:
        for i in range(tables):
            table = rng.standard_normal((rows, WIDTH), dtype=np.float32)
            fh.write(table.tobytes())
            tensor = TensorProto(name=f"table{i}", data_type=TensorProto.FLOAT, dims=[rows, WIDTH],
                                 data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(table.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += table.nbytes
            initializers.append(tensor)
            del table
    projection = (rng.standard_normal((WIDTH, 16)) / np.sqrt(WIDTH)).astype(np.float32)
    initializers += [numpy_helper.from_array(projection, "W"), numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Gather", [f"table{i}", "ids"], [f"emb{i}"], name=f"lookup{i}", axis=0)
             for i in range(tables)]
    nodes += [helper.make_node("Sum", [f"emb{i}" for i in range(tables)], ["emb"], name="sum"),
              helper.make_node("ReduceMean", ["emb", "axes"], ["pooled"], keepdims=0, name="pool"),
              helper.make_node("MatMul", ["pooled", "W"], ["features"], name="project")]
    graph = helper.make_graph(nodes, "large", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = folder / "large.onnx"
    onnx.save_model(model, str(path))  # the graph only: the tables are already in large.onnx.data
    return path


def serving_answers_as_float(chosen: Path, source: Path, rows: int) -> float:
    """The chosen model in the serving runtime's session against float: the worst row's cosine."""
    from mlpack.runtime.config import open_session

    ids = np.random.default_rng(1).integers(0, rows, size=(64, 8), dtype=np.int64)
    got = open_session(chosen, {}, ["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    want = open_session(source, {}, ["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    cosine = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cosine.min())


def run(tables: int, rows: int, timing_budget_s: float | None = None) -> dict:
    from mlpack.model.files import model_paths, stored_external

    with tempfile.TemporaryDirectory(prefix="mlpack-large-model-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        model = make_model(folder, tables, rows)
        made_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in model_paths(model))
        out = folder / "optimized"
        done = run_child(optimize_command(model, "x86-cpu", out, timing_budget_s=timing_budget_s),
                         folder / "optimize.log")
        if done.returncode != 0:
            raise SystemExit(f"mlpack optimize failed: {done.output.strip()}")
        report = json.loads((out / "report.json").read_text())
        chosen = out / "model.onnx"
        return {
            "model_bytes": size,
            "tables": tables,
            "rows": rows,
            "generate_s": made_s,
            "optimize_s": done.seconds,
            "peak_rss_mb": done.peak_mb,
            "candidates": [(c["name"], c["size_bytes"], c["passed"], c["held_back"]) for c in report["candidates"]],
            "skipped": [(s["name"], s["why"]) for s in report["skipped"]],
            "chosen": report["chosen"],
            "why": report["why"],
            "chosen_external": stored_external(chosen),
            "chosen_files": [p.name for p in model_paths(chosen)],
            "cosine_min": serving_answers_as_float(chosen, model, rows),
            "stderr_lines": [line for line in done.output.splitlines() if not line.startswith("  ")],
        }


def markdown(r: dict) -> str:
    from mlpack.sizes import format_size

    rows = "\n".join(f"| {name} | {format_size(size)} | {'FAIL' if not ok else 'pass, held back' if held else 'pass'} |"
                     for name, size, ok, held in r["candidates"])
    skipped = "".join(f"\n- `{name}` not made: {why}" for name, why in r["skipped"])
    return f"""## {HEADING}

`python -m benchmarks.large_model`: a {format_size(r['model_bytes'])} model ({r['tables']} float32
tables of {r['rows']:,} x {WIDTH}, as external data), `mlpack optimize -t x86-cpu` on it in a child
process: {r['optimize_s']:.0f} s, peak RSS {r['peak_rss_mb']:,.0f} MB. The chosen variant,
`{r['chosen']}`, is stored as {' + '.join(r['chosen_files'])}
({'external' if r['chosen_external'] else 'inline'}); the serving runtime loads it and answers
as float does (worst cosine {r['cosine_min']:.4f} over 64 rows). Why `{r['chosen']}`: {r['why']}.

| candidate | size | gate |
|---|---:|---|
{rows}
{skipped}
"""


def quick(tables: int = 3) -> list[Ratio]:
    small, large = (run(tables, rows, QUICK_TIMING_S) for rows in QUICK_ROWS)
    for r in (small, large):
        print(f"{r['model_bytes'] / 1e6:.1f} MB model: {r['optimize_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"chose {r['chosen']} ({' + '.join(r['chosen_files'])}), worst cosine to float {r['cosine_min']:.4f}")
        if not r["chosen_external"] or r["cosine_min"] < MIN_COSINE:
            raise SystemExit(f"large_model: the {r['model_bytes'] / 1e6:.0f} MB model's pick kept its weights "
                             f"{'external' if r['chosen_external'] else 'inline'} and answers with cosine "
                             f"{r['cosine_min']:.4f} (wanted external, at least {MIN_COSINE})")
    grown = (large["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20
    return [Ratio("optimize's peak RSS growth / the model's growth (bytes)", max(grown, 1.0),
                  large["model_bytes"] - small["model_bytes"], MEMORY_PER_BYTE)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table (200,000: 2.29 GiB in all)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    add_options(parser)
    args = parser.parse_args()
    if args.quick:
        return report(quick(args.tables), args.check)
    result = run(args.tables, args.rows)
    text = markdown(result)
    print(text)
    if result["stderr_lines"]:
        print("stderr besides progress:", *result["stderr_lines"], sep="\n  ")
    if not args.no_write:
        write_section(HEADING, text, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
