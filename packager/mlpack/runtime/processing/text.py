"""Text in, token ids out: the artifact's Hugging Face tokenizer (`tokenizers`) fills the
model's token inputs from the served `text` input, one string per row.

Truncation and padding were decided at build (manifest `processing.preprocess`): rows are
cut at `max_length` tokens and padded to the longest row of the request, or to the
model's fixed length when its inputs fix one. Where the build allowed it (`length_groups`), a
request of many rows runs as groups of rows of similar length (`groups`), so that a batch
of short sentences does not pay for its longest one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..validation import RequestError

# What a token input of the model is filled with, by the role the build gave it.
ROLES = ("ids", "mask", "type_ids", "positions")


class TextPreprocess:
    def __init__(self, step: Mapping[str, Any], folder: Path, model_inputs: Sequence[Mapping[str, Any]]) -> None:
        from tokenizers import Tokenizer

        self.input = step["input"]
        self.feeds: dict[str, str] = dict(step["feeds"])
        dtypes = {spec["name"]: spec["dtype"] for spec in model_inputs}
        self.dtypes = {name: np.dtype(dtypes[name]) for name in self.feeds}
        tokenizer = Tokenizer.from_file(str(Path(folder) / step["tokenizer"]["path"]))
        tokenizer.enable_truncation(int(step["max_length"]))
        tokenizer.enable_padding(
            direction=step.get("direction", "right"), pad_id=int(step["pad_id"]),
            pad_type_id=int(step.get("pad_type_id", 0)), pad_token=step["pad_token"],
            length=int(step["max_length"]) if step["padding"] == "fixed" else None,
        )
        self.tokenizer = tokenizer
        self.direction = step.get("direction", "right")
        self.group_rows = step.get("length_groups")
        self.mask = next((name for name, role in self.feeds.items() if role == "mask"), None)
        # encode_batch_fast skips character offsets, which nothing here reads (tokenizers >= 0.20).
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def __call__(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.encode(_texts(self.input, arrays[self.input]))

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The model's token inputs for these texts, one row each."""
        encodings = self._encode(texts)
        columns = {
            "ids": lambda: [e.ids for e in encodings],
            "mask": lambda: [e.attention_mask for e in encodings],
            "type_ids": lambda: [e.type_ids for e in encodings],
            "positions": lambda: [list(range(len(e.ids))) for e in encodings],
        }
        return {name: np.array(columns[role](), dtype=self.dtypes[name]).reshape(len(texts), -1)
                for name, role in self.feeds.items()}


    def groups(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]] | None:
        """The rows of a request longer than one group, sorted by length into groups of
        `length_groups` rows, each cut to its own longest row: (row indices, the group's
        feeds). None: run the request as one batch. The build set `length_groups` only for a
        model whose outputs it saw unchanged by padding."""
        if not self.group_rows or self.mask is None or len(feeds[self.mask]) <= self.group_rows:
            return None
        lengths = np.count_nonzero(feeds[self.mask], axis=1)
        order = np.argsort(lengths, kind="stable")
        groups = []
        for start in range(0, len(order), self.group_rows):
            rows = order[start:start + self.group_rows]
            width = max(int(lengths[rows].max()), 1)
            cut = slice(None, width) if self.direction == "right" else slice(-width, None)
            groups.append((rows, {name: array[rows][:, cut] for name, array in feeds.items()}))
        return groups


def _texts(name: str, values: Any) -> list[str]:
    texts = []
    for row, value in enumerate(np.asarray(values, dtype=object).ravel().tolist()):
        if isinstance(value, bytes):  # BYTES tensors of the Open Inference Protocol
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"input {name!r} row {row} is not UTF-8 text") from None
        if not isinstance(value, str):
            raise RequestError(f"input {name!r} row {row} is a {type(value).__name__}: expected a string")
        texts.append(value)
    return texts
