"""Text encoder throughput: raw text tokenized in the artifact against tokenizing on the client.

    python -m benchmarks.text_processing [--seconds 20] [--concurrency 8] [--batch 1 8]
                                         [--calibration-sentences 96] [--no-write]
    python -m benchmarks.text_processing --quick --check   # seconds, on a miniature encoder

Builds the MiniLM-L6 sentence encoder (real weights, benchmarks/minilm_model.py) for
x86-cpu with its tokenizer.json beside it, so the Bento takes a `text` input. The
baseline is the same Bento app (same model bytes, same service code, same session) with
the processing taken out of its runtime.json, so that it takes `input_ids` and
`attention_mask`: its client tokenizes each request itself, with the same tokenizer and
settings, before sending it (in requests/s; the latencies are the HTTP round trips).
Same load generator (benchmarks/serve_throughput.py), same run, one server at a time.
Prints the "Text processing throughput" section and writes it into BENCHMARKS.md.

Goal (what the section shows): moving tokenization into the artifact costs little: 0.89x
and 1.05x the requests/s of the client that tokenizes, at 1 and 8 sentences per request, in
the full run. `--quick` builds a miniature sentence encoder (onnx.helper, 16 dimensions,
with a WordPiece tokenizer.json trained on the same sentences; tests/processing_models.py)
instead of MiniLM, serves both apps at once and loads each row for QUICK_SECONDS with
QUICK_CONCURRENCY clients, the rows in turn in four rounds. Its model takes microseconds, so
what is compared is where tokenizing runs, client threads or server, on the same 2 shared
cores: quick runs here gave 0.36x to 1.35x the client's seconds per sentence. The quick
limit, QUICK_LIMIT, is loosened to that spread: it catches tokenizing in the artifact
becoming several times dearer, not a 10% change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.markdown import write_section
from benchmarks.minilm_model import build_minilm, package_dir, sentences
from benchmarks.quick import Ratio, add_options, interleaved, report
from benchmarks.serve_throughput import load, serve, stop
from tests.agent_harness import free_port

HEADING = "Text processing throughput"
QUICK_SECONDS, QUICK_CONCURRENCY, QUICK_BATCHES = 2.0, 4, (1, 8)  # seconds per row, in 4 rounds
QUICK_LIMIT = 1.6  # seconds per sentence, raw text in the artifact against the client tokenizing
CLIENT = "client tokenizes, sends token ids"


def without_processing(app: Path, dest: Path) -> Path:
    """A copy of a Bento's app folder that serves the model's own token inputs."""
    shutil.copytree(app, dest)
    runtime = json.loads((dest / "runtime.json").read_text())
    runtime.pop("processing")
    (dest / "runtime.json").write_text(json.dumps(runtime, indent=2))
    return dest


def client_tokenizer(step: dict, folder: Path):
    """The tokenizer as the artifact configures it (truncation, pad token, longest padding)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / step["tokenizer"]["path"]))
    tokenizer.enable_truncation(step["max_length"])
    tokenizer.enable_padding(pad_id=step["pad_id"], pad_token=step["pad_token"])
    return tokenizer


class Requests(Sequence[dict]):
    """Request bodies made when the load generator takes one (`serve_throughput.load` reads
    `bodies[i]` just before it sends it): a client that tokenizes pays for it per request,
    in requests/s (its closed loop waits for it), not in the round trip's latency."""

    def __init__(self, make: Callable[[int], dict], count: int) -> None:
        self.make, self.count = make, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        return self.make(index)


def body_bytes(bodies: Requests) -> float:
    return statistics.mean(len(json.dumps(bodies[i])) for i in range(len(bodies)))


def measure(result, probes: list[str], tmp: Path, batches: Sequence[int], seconds: float, concurrency: int,
            ports: tuple[int, int], warmup_s: float = 3, rounds: int | None = None) -> dict[tuple[str, int], dict]:
    """The Bento that tokenizes and its copy without processing: each served alone, one after
    the other; or, with `rounds`, both served and every row loaded in turn (quick.interleaved)."""
    app = result.path / "bento" / "src"
    step = result.manifest.processing.preprocess.model_dump()
    plain = without_processing(app, tmp / "plain-app")
    tokenizer = client_tokenizer(step, app)
    feeds = list(step["feeds"])

    def rows(i: int, batch: int) -> list[str]:
        return [probes[(i * batch + j) % len(probes)] for j in range(batch)]

    def raw_text(batch: int) -> Requests:
        return Requests(lambda i: {"inputs": {"text": rows(i, batch)}}, len(probes))

    def client_tokenized(batch: int) -> Requests:
        def body(i: int) -> dict:
            encoded = tokenizer.encode_batch(rows(i, batch))
            columns = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                       "token_type_ids": [e.type_ids for e in encoded]}
            return {"inputs": {name: columns[name] for name in feeds}}
        return Requests(body, len(probes))

    servers = ((CLIENT, ["service:MlpackService"], plain, client_tokenized),
               ("raw text, tokenized in the artifact", [str(result.path / "bento")], tmp, raw_text))
    runs: dict[tuple[str, int], dict] = {}
    procs = []
    try:
        timed = {}
        for (label, args, cwd, make), port in zip(servers, ports):
            procs.append(serve(args, cwd, port, tmp / f"home{port}"))
            url = f"http://127.0.0.1:{port}/predict"
            for batch in batches:
                load(url, make(batch), warmup_s, concurrency)
                timed[(label, batch)] = lambda s, url=url, bodies=make(batch): load(url, bodies, s, concurrency)
                if not rounds:
                    runs[(label, batch)] = timed[(label, batch)](seconds)
            if not rounds:
                stop(procs.pop())
        if rounds:
            runs = interleaved(timed, seconds, rounds)
    finally:
        for proc in procs:
            stop(proc)
    sizes = {batch: {label: body_bytes(make(batch)) for label, _, _, make in servers} for batch in batches}
    return {(label, batch): {**r, "body_bytes": sizes[batch][label]} for (label, batch), r in runs.items()}


def build_with_tokenizer(model: Path, calibration: list[str], tmp: Path):
    """The x86-cpu artifact of `model`, whose tokenizer.json lies beside it, calibrated on sentences."""
    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    (tmp / "sentences.txt").write_text("\n".join(calibration) + "\n")
    return build(BuildRequest(model=model, target="x86-cpu", out=tmp / "out", calibration=tmp / "sentences.txt"),
                 Progress(quiet=True))


def quick() -> list[Ratio]:
    from tests.processing_models import text_encoder, train_tokenizer, vocab_size

    texts = sentences(64 + 256)
    with tempfile.TemporaryDirectory(prefix="mlpack-text-quick-") as tmp_name:
        tmp = Path(tmp_name)
        tokenizer = train_tokenizer(tmp / "tokenizer.json", texts)
        model = text_encoder(tmp / "encoder.onnx", vocab_size(tokenizer))
        result = build_with_tokenizer(model, texts[:64], tmp)
        runs = measure(result, texts[64:], tmp, QUICK_BATCHES, QUICK_SECONDS, QUICK_CONCURRENCY,
                       (free_port(), free_port()), warmup_s=0.5, rounds=4)
    print(*(f"| {label} | {batch} | {r['rps'] * batch:.1f} sentences/s | {r['errors']} errors |"
            for (label, batch), r in runs.items()), sep="\n")
    failed = {key: r["errors"] for key, r in runs.items() if r["errors"]}
    if failed:
        raise SystemExit(f"text_processing: requests failed: {failed}")
    return [Ratio(f"{batch} sentence(s) per request: seconds per sentence, raw text / client tokenizing",
                  1 / (r["rps"] * batch), 1 / (runs[(CLIENT, batch)]["rps"] * batch), QUICK_LIMIT)
            for (label, batch), r in runs.items() if label != CLIENT]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="sentences per request")
    parser.add_argument("--calibration-sentences", type=int, default=96)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    add_options(parser)
    opts = parser.parse_args()
    if opts.quick:
        return report(quick(), opts.check)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="mlpack-text-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = build_minilm(tmp / "minilm.onnx")
        shutil.copyfile(package_dir() / "tokenizer.json", tmp / "tokenizer.json")
        texts = sentences(opts.calibration_sentences + 256)
        print("building the x86-cpu artifact with its tokenizer ...", file=sys.stderr)
        result = build_with_tokenizer(model, texts[: opts.calibration_sentences], tmp)
        runs = measure(result, texts[opts.calibration_sentences:], tmp, opts.batch, opts.seconds, opts.concurrency,
                       (3970, 3971))

    lines = [
        f"## {HEADING}", "",
        f"Produced by `python -m benchmarks.text_processing --seconds {opts.seconds:g} --concurrency "
        f"{opts.concurrency} --batch {' '.join(map(str, opts.batch))} --calibration-sentences "
        f"{opts.calibration_sentences}` on {os.cpu_count()} cores (load average {load_before:.1f} before the run; "
        "the load generator of benchmarks/serve_throughput.py runs on the same cores). The MiniLM-L6 sentence "
        f"encoder built for x86-cpu with its tokenizer.json (variant `{result.manifest.model.variant}`), served by its Bento; the baseline is the same "
        "Bento app with the processing removed from runtime.json, whose client tokenizes each request (same "
        "tokenizer, same truncation and padding) before sending it: that counts in requests/s, while p50 and "
        "p95 are the HTTP round trips. Sentences from the standard library's "
        f"docstrings, {opts.concurrency} concurrent clients, {opts.seconds:g} s per row after a 3 s warm-up.",
        "",
        "| client sends | sentences/request | requests/s | sentences/s | p50 ms | p95 ms | body bytes | errors "
        "| vs client tokenizing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, batch), r in runs.items():
        base = runs[(CLIENT, batch)]["rps"]
        lines.append(f"| {label} | {batch} | {r['rps']:.1f} | {r['rps'] * batch:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['body_bytes']:.0f} | {r['errors']} | {r['rps'] / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not opts.no_write:
        write_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
