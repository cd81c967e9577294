"""Text encoder throughput: raw text tokenized in the artifact against tokenizing on the client.

    python -m benchmarks.text_processing [--seconds 20] [--concurrency 8] [--batch 1 8]
                                         [--calibration-sentences 96] [--no-write]

Builds the MiniLM-L6 sentence encoder (real weights, benchmarks/minilm_model.py) for
x86-cpu with its tokenizer.json beside it, so the Bento takes a `text` input. The
baseline is the same Bento app (same model bytes, same service code, same session) with
the processing taken out of its runtime.json, so that it takes `input_ids` and
`attention_mask`: its client tokenizes each request itself, with the same tokenizer and
settings, before sending it (in requests/s; the latencies are the HTTP round trips).
Same load generator (benchmarks/serve_throughput.py), same run, one server at a time.
Prints the "Text processing throughput" section and writes it into BENCHMARKS.md.
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
from benchmarks.serve_throughput import load, serve

HEADING = "Text processing throughput"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="sentences per request")
    parser.add_argument("--calibration-sentences", type=int, default=96)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]

    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    with tempfile.TemporaryDirectory(prefix="mlpack-text-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = build_minilm(tmp / "minilm.onnx")
        shutil.copyfile(package_dir() / "tokenizer.json", tmp / "tokenizer.json")
        texts = sentences(opts.calibration_sentences + 256)
        (tmp / "sentences.txt").write_text("\n".join(texts[: opts.calibration_sentences]) + "\n")
        probes = texts[opts.calibration_sentences:]
        print("building the x86-cpu artifact with its tokenizer ...", file=sys.stderr)
        result = build(BuildRequest(model=model, target="x86-cpu", out=tmp / "out", calibration=tmp / "sentences.txt"),
                       Progress(quiet=True))
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

        runs: dict[tuple[str, int], dict] = {}
        servers = (("client tokenizes, sends token ids", ["service:MlpackService"], plain, client_tokenized),
                   ("raw text, tokenized in the artifact", [str(result.path / "bento")], tmp, raw_text))
        for index, (label, args, cwd, make) in enumerate(servers):
            port = 3970 + index
            proc = serve(args, cwd, port, tmp / f"home{index}")
            try:
                for batch in opts.batch:
                    url = f"http://127.0.0.1:{port}/predict"
                    load(url, make(batch), 3, opts.concurrency)  # warm-up
                    runs[(label, batch)] = {**load(url, make(batch), opts.seconds, opts.concurrency),
                                            "body_bytes": body_bytes(make(batch))}
            finally:
                proc.terminate()
                proc.wait(timeout=30)

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
        base = runs[(servers[0][0], batch)]["rps"]
        lines.append(f"| {label} | {batch} | {r['rps']:.1f} | {r['rps'] * batch:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['body_bytes']:.0f} | {r['errors']} | {r['rps'] / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not opts.no_write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
