"""The memory one request can cost and the server container limit mlpack derives from it,
for the server targets' default limits and a few model signatures, as docs/serving.md
states them.

    python -m benchmarks.request_memory [--no-write]
    python -m benchmarks.request_memory --quick --check   # docs/serving.md's table is what the code computes now

Computed, not measured: `RequestBudget.peak_bytes` and `facts.server_memory_facts` on
manifests made for each signature (a model of 1 MiB). What a served Bento really uses
under the costliest requests is measured by tests/test_hostile_clients.py (the fault
table of docs/reliability.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlpack.render.facts import server_memory_facts
from mlpack.model.info import Signature, TensorSpec
from mlpack.runtime.budget import RequestBudget
from mlpack.runtime.limits import RequestLimits
from benchmarks.quick import add_options
from tests.manifests import DIGITS_SIGNATURE, render_context

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
START, END = "<!-- request-memory:start -->", "<!-- request-memory:end -->"
TARGETS = ["x86-cpu", "arm-edge", "cuda-gpu"]
MODEL_BYTES = 2**20


def _signature(inputs: list[TensorSpec]) -> Signature:
    return Signature(inputs=inputs, outputs=[TensorSpec(name="y", dtype="float32", shape=["batch", 2])])


SIGNATURES = {
    "float32 [?, 64] (the demo)": DIGITS_SIGNATURE,
    "float32 [1, 3, 320, 480] (one image)": _signature([TensorSpec(name="image", dtype="float32",
                                                                   shape=[1, 3, 320, 480])]),
    "2 x int64 [?, ?] (token ids, no tokenizer)": _signature([
        TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"]),
        TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "sequence"])]),
}


def rows() -> list[str]:
    lines = ["| target | inputs | limits (body, rows, at once) | values per request | one request at most | "
             "container limit |", "|---|---|---|---|---|---|"]
    for target in TARGETS:
        for label, signature in SIGNATURES.items():
            ctx = render_context(target, "model", signature=signature, size_bytes=MODEL_BYTES)
            serving = ctx.target.serving
            budget = RequestBudget.of(RequestLimits.from_json(serving.limits_settings()),
                                      [t.model_dump() for t in signature.inputs])
            memory = server_memory_facts(ctx)
            values = f"{budget.max_values:,}" if budget.max_values is not None else "bounded by the body only"
            lines.append(
                f"| {target} | {label} | {serving.max_request_mb:g} MiB, {serving.max_rows:,}, "
                f"{serving.max_concurrency} | {values} | {budget.peak_bytes() / 2**20:,.0f} MiB | "
                f"{memory.limit_mb:,} MiB |")
    return lines


def current(doc: Path = DOC) -> str:
    """The table docs/serving.md holds now."""
    return doc.read_text(encoding="utf-8").split(START, 1)[1].split(END, 1)[0].strip("\n")


def write(text: str, doc: Path = DOC) -> None:
    current = doc.read_text(encoding="utf-8")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    add_options(parser)
    args = parser.parse_args(argv)
    text = "\n".join(rows()) + f"\n\nComputed by `python -m benchmarks.request_memory` (a model of {MODEL_BYTES // 2**20} MiB)."
    print(text)
    if args.quick:
        # Computed, not measured: the check is that the doc states what the code computes now.
        stale = current() != text
        print(f"check: {DOC.name}'s request-memory table matches the code: {'NO, rerun the command' if stale else 'ok'}")
        return 1 if args.check and stale else 0
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
