"""Served requests per second through mlpack's /predict and the Open Inference Protocol
v2 (/v2/models/NAME/infer, JSON tensors and binary tensors) on the same artifact, the
same server process and the same load generator, in one run.

    python -m benchmarks.serve_protocols [--seconds 20] [--concurrency 8] [--rows 1] [--no-write]
    python -m benchmarks.serve_protocols --quick --check [--artifact DIR]   # seconds: each v2 route
                                                                            # against /predict

The artifact is the x86-cpu build of the embedded digits demo (no download): a small
model, so the figures show what each protocol costs around the model. Prints the
"Serving protocols" section and writes it into BENCHMARKS.md; every figure comes from
this run.

Goal (what the section shows): the Open Inference Protocol routes cost no more per request
than /predict. `--quick` times each route for QUICK_SECONDS with QUICK_CONCURRENCY clients
after a short warm-up, the routes in turn in QUICK_ROUNDS rounds, on the demo artifact given by `--artifact` (or
built), and checks each v2 route's seconds per request against /predict's in the same round and the same server,
the median over the rounds. Since
/predict is a plain Starlette route like /v2 (the same guard, thread hop and JSON), the two
cost the same within this machine's noise: quick runs here gave 0.69x to 1.27x. QUICK_LIMIT
is that band, so the check catches a v2 route becoming clearly dearer, not a coin toss. A
try past it is run again, on a fresh server, up to three tries (benchmarks.quick.measured_again):
a full test run once gave 2.02x for JSON tensors, with three pytest workers on the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.markdown import write_section
from benchmarks.quick import (Ratio, add_artifact_option, add_options, demo_artifact, interleaved,
                              measured_again, report)
from benchmarks.routes import PREDICT, V2_BINARY, V2_JSON, answer, mlpack_routes, post
from benchmarks.serve_throughput import load, serve, table_rows
from mlpack.artifact import Artifact
from tests.agent_harness import free_port

PORT = 3990
QUICK_SECONDS, QUICK_CONCURRENCY, QUICK_ROUNDS = 2.4, 4, 8  # seconds per route, in alternating rounds
QUICK_LIMIT = 1.4  # a v2 route's seconds per request against /predict's (see the docstring)


def request_bodies(pixels: np.ndarray, rows: int, name: str) -> dict[str, tuple[str, list]]:
    """For each route: its path and the request bodies (the same rows, in its encoding)."""
    batches = [{"pixels": pixels[i : i + rows].astype(np.float32)} for i in range(0, len(pixels) - rows + 1, rows)]
    return {label: (path, [encode(b) for b in batches])
            for label, (path, encode) in mlpack_routes(name, ["label", "probabilities"],
                                                       (PREDICT, V2_JSON, V2_BINARY)).items()}


def same_labels(base: str, routes: dict[str, tuple[str, list]]) -> list[list[int]]:
    """Each route's labels for its first request: the routes must agree before they are timed."""
    answers = [answer(post(base + path, bodies[0], timeout=30), "label").tolist() for path, bodies in routes.values()]
    if any(a != answers[0] for a in answers):
        raise SystemExit(f"the routes disagree: {json.dumps(answers)}")
    return answers


def measure(artifact: Artifact, rows: int, seconds: float, concurrency: int, port: int,
            tmp: Path, warmup_s: float = 3, rounds: int | None = None) -> dict[str, dict[str, float]]:
    """Each route's load run against one `bentoml serve` of the artifact's Bento: one route
    after another, or with `rounds`, in turn (benchmarks.quick.interleaved)."""
    from mlpack.model.demo import demo_model

    _, data = demo_model()
    with np.load(data) as archive:
        pixels = archive["pixels"][: 64 * rows]
    routes = request_bodies(pixels, rows, artifact.manifest.name)
    proc = serve([str(artifact.root / "bento")], tmp, port, tmp / "home")
    base = f"http://127.0.0.1:{port}"
    try:
        same_labels(base, routes)
        for path, bodies in routes.values():  # every route warm before any is timed
            load(base + path, bodies, warmup_s, concurrency)
        timed = {label: (lambda s, url=base + path, bodies=bodies: load(url, bodies, s, concurrency))
                 for label, (path, bodies) in routes.items()}
        runs = (interleaved(timed, seconds, rounds) if rounds else
                {label: run(seconds) for label, run in timed.items()})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return runs


def quick(given: Path | None) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="mlpack-protocols-quick-") as tmp_name:
        tmp = Path(tmp_name)
        artifact = demo_artifact(given, "x86-cpu", tmp / "out")
        return measured_again(lambda attempt: quick_try(artifact, tmp / f"try-{attempt}"))


def quick_try(artifact: Artifact, tmp: Path) -> list[Ratio]:
    """One server, each v2 route against /predict in QUICK_ROUNDS rounds."""
    tmp.mkdir()
    runs = measure(artifact, 1, QUICK_SECONDS, QUICK_CONCURRENCY, free_port(), tmp, warmup_s=1, rounds=QUICK_ROUNDS)
    print("\n".join(table_rows(runs)))
    failed = {label: r["errors"] for label, r in runs.items() if r["errors"]}
    if failed:
        raise SystemExit(f"serve_protocols: requests failed: {failed}")
    # Round by round (each route against /predict in the same round), then the median: one
    # round hit by another process's burst cannot decide the check.
    predict = runs[PREDICT]["rounds"]
    return [Ratio(f"{label}: seconds per request / /predict's, median of {len(predict)} rounds",
                  statistics.median(p["rps"] / max(o["rps"], 1e-9) for p, o in zip(predict, r["rounds"])), 1.0,
                  QUICK_LIMIT)
            for label, r in runs.items() if label != PREDICT]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1, help="rows (digit images) per request")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    add_options(parser)
    add_artifact_option(parser, "x86-cpu")
    opts = parser.parse_args()
    if opts.quick:
        return report(quick(opts.artifact), opts.check)
    load_before = os.getloadavg()[0]

    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    with tempfile.TemporaryDirectory(prefix="mlpack-protocols-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print("building the x86-cpu demo artifact ...", file=sys.stderr)
        result = build(BuildRequest(target="x86-cpu", out=tmp / "out"), Progress(quiet=True))
        runs = measure(Artifact.open(result.path), opts.rows, opts.seconds, opts.concurrency, PORT, tmp)
        variant = result.manifest.model.variant

    lines = [
        "## Serving protocols", "",
        f"Produced by `python -m benchmarks.serve_protocols --seconds {opts.seconds:g} --concurrency "
        f"{opts.concurrency} --rows {opts.rows}` on {os.cpu_count()} cores (load average {load_before:.1f} before "
        "the run; the load generator runs on the same cores). One x86-cpu artifact of the digits demo "
        f"({variant} model), one `bentoml serve` process, the same closed-loop load generator for every route: "
        f"{opts.concurrency} concurrent clients, requests of {opts.rows} row(s), {opts.seconds:g} s per route after "
        "a 3 s warm-up, the routes one after another. The routes agree on the labels before they are timed.",
        "",
        "| route | requests/s | p50 ms | p95 ms | errors | throughput vs /predict |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += table_rows(runs)
    text = "\n".join(lines) + "\n"
    print(text)
    if not opts.no_write:
        write_section("Serving protocols", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
