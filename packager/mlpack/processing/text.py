"""--tokenizer: which model inputs a Hugging Face tokenizer fills, and how long rows get.

The tokenizer is `tokenizer.json` (the `tokenizers` format, as `optimum-cli export onnx`
and the Hugging Face hub write it), given with `--tokenizer` or found beside the model.
Truncation follows the tokenizer's own limit, capped by the model's (a fixed sequence
axis, or the rows of its position-embedding table); padding uses the tokenizer's pad
token and goes to the longest row of a request, or to the model's fixed length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from ..errors import InputError
from ..model.info import ModelInfo, TensorSpec
from .files import file_ref
from .request import NO_TOKENIZER
from .schema import TextPreprocess

TOKENIZER_FILE = "tokenizer.json"
# Model input names a tokenizer fills, by role (transformers', optimum's and TF BERT's names).
ROLE_NAMES = {
    "ids": ("input_ids", "ids", "input", "tokens", "token_ids"),
    "mask": ("attention_mask", "input_mask", "mask"),
    "type_ids": ("token_type_ids", "segment_ids", "token_types", "type_ids"),
    "positions": ("position_ids", "positions"),
}
# A request of more rows runs in groups of this many rows of similar length. Chosen, not
# tuned: fewer rows per group means more session runs; benchmarks/text_processing.py measures
# the result on MiniLM at batch 32.
LENGTH_GROUP_ROWS = 8
DEFAULT_MAX_LENGTH = 512  # when neither the tokenizer nor the model states a limit
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>")
_FIX = "pass --tokenizer tokenizer.json (the Hugging Face `tokenizers` format), or --tokenizer none"


def role_of(name: str) -> str | None:
    lowered = name.lower()
    return next((role for role, names in ROLE_NAMES.items() if lowered in names), None)


def find_tokenizer(option: str | None, info: ModelInfo) -> tuple[Path, str] | None:
    """The tokenizer to use and how it was found: the option's file, or tokenizer.json beside a
    model whose inputs are token ids; None without one (or with --tokenizer none)."""
    if option == NO_TOKENIZER:
        return None
    if option is not None:
        path = Path(option)
        if not path.is_file():
            raise InputError(f"tokenizer file {path} does not exist", _FIX)
        return path, f"--tokenizer {path.name}"
    beside = info.path.parent / TOKENIZER_FILE
    if beside.is_file() and any(role_of(s.name) == "ids" for s in info.signature.inputs):
        return beside, f"{TOKENIZER_FILE} beside the model"
    return None


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a plain Exception with serde's message
        detail = " ".join(str(exc).split())[:200]
        raise InputError(f"{path.name} is not a Hugging Face tokenizer file ({detail})", _FIX) from None


def resolve_text(path: Path, found: str, info: ModelInfo) -> TextPreprocess:
    tokenizer = load_tokenizer(path)
    specs = info.signature.inputs
    feeds = {spec.name: _role(spec) for spec in specs}
    if "ids" not in feeds.values():
        raise InputError(f"no model input takes token ids (inputs: {', '.join(s.name for s in specs)})",
                         "a tokenizer fills input_ids (and attention_mask, token_type_ids); for other "
                         "inputs write a --processing hook")
    max_length, limit_from = _max_length(tokenizer, path, info, specs)
    fixed = _fixed_length(specs)
    padding = tokenizer.padding or {}
    pad_token, pad_id = _pad(tokenizer, padding)
    return TextPreprocess(
        tokenizer=file_ref(path, TOKENIZER_FILE), found=found, feeds=feeds, max_length=max_length,
        max_length_from=limit_from, padding="fixed" if fixed else "longest",
        direction=padding.get("direction", "right"), pad_id=pad_id, pad_type_id=int(padding.get("pad_type_id", 0)),
        pad_token=pad_token, length_groups=length_groups(feeds, fixed, info),
    )


def length_groups(feeds: dict[str, str], fixed: int | None, info: ModelInfo) -> int | None:
    """Rows per length group, or None where grouping could change an answer: the model must
    mask padding (an attention mask input), and every output must be per row (first axis the
    batch) with no sequence axis, so rows cut to another length give the same outputs.
    `_decide_from_sample` then checks that on the model itself."""
    if fixed or "mask" not in feeds.values():
        return None
    inputs = [s for s in info.signature.inputs if s.name in feeds]
    batch = {s.shape[0] for s in inputs}
    sequence = {s.shape[1] for s in inputs}
    if len(batch) != 1 or len(sequence) != 1 or not all(isinstance(d, str) for d in (*batch, *sequence)):
        return None  # unnamed axes: no way to tell a sequence axis in the outputs
    for out in info.signature.outputs:
        if not out.is_tensor or not out.shape or out.shape[0] not in batch or any(d in sequence for d in out.shape):
            return None
    return LENGTH_GROUP_ROWS


def _role(spec: TensorSpec) -> str:
    role = role_of(spec.name)
    if role is None:
        raise InputError(
            f"model input {spec.name!r} is not one a tokenizer fills (token ids, attention mask, token type "
            "ids, position ids)", "fill it with a --processing hook (preprocess) instead of --tokenizer")
    if not spec.is_tensor or np.dtype(spec.dtype).kind not in "iu" or spec.shape is None or len(spec.shape) != 2:
        raise InputError(f"model input {spec.name!r} is {spec.dtype} {spec.shape_text()}: token inputs are "
                         "integer [batch, sequence] tensors", "check that the model takes token ids")
    return role


def _fixed_length(specs: list[TensorSpec]) -> int | None:
    return next((s.shape[1] for s in specs if s.shape and isinstance(s.shape[1], int)), None)


def _max_length(tokenizer, path: Path, info: ModelInfo, specs: list[TensorSpec]) -> tuple[int, str]:
    limits: list[tuple[int, str]] = []
    truncation = tokenizer.truncation
    if truncation and truncation.get("max_length"):
        limits.append((int(truncation["max_length"]), f"{TOKENIZER_FILE}'s truncation"))
    fixed = _fixed_length(specs)
    if fixed:
        limits.append((fixed, "the model's fixed sequence length"))
    positions = _position_rows(info.path)
    if positions:
        limits.append((positions, "the model's position embeddings"))
    if limits:
        return min(limits)
    configured = _configured_max_length(path.parent)
    if configured:
        return configured, "tokenizer_config.json's model_max_length"
    return DEFAULT_MAX_LENGTH, "mlpack's default (neither the tokenizer nor the model states a limit)"


def _position_rows(model_path: Path) -> int | None:
    """Rows of a 2-D initializer named like a position-embedding table: the longest sequence
    the model can embed (BERT-like models fail past it)."""
    model = onnx.load(str(model_path), load_external_data=False)
    rows = [int(t.dims[0]) for t in model.graph.initializer
            if len(t.dims) == 2 and "position" in t.name.lower() and "embed" in t.name.lower()]
    return min(rows) if rows else None


def _configured_max_length(folder: Path) -> int | None:
    config = folder / "tokenizer_config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, ValueError, AttributeError):
        return None
    # transformers writes a huge sentinel (1e30) when the model states no limit.
    return int(value) if isinstance(value, (int, float)) and 0 < value < 1_000_000 else None


def _pad(tokenizer, padding: dict) -> tuple[str, int]:
    if padding.get("pad_token") is not None and padding.get("pad_id") is not None:
        return str(padding["pad_token"]), int(padding["pad_id"])
    for token in PAD_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token, int(token_id)
    # No pad token: padded positions are masked out, so any id will do; 0 is always in the vocabulary.
    return tokenizer.id_to_token(0) or "", 0


def is_sentences(path: Path) -> bool:
    """A calibration file of sentences (.txt), rather than a .npz of model inputs."""
    return path.suffix.lower() == ".txt"


def read_sentences(path: Path) -> list[str]:
    """A calibration file of sentences: one per line, blank lines skipped."""
    fix = "write one sentence per line (UTF-8)"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"calibration file {path} is not UTF-8 text", fix) from None
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise InputError(f"calibration file {path} holds no sentences", fix)
    return sentences
