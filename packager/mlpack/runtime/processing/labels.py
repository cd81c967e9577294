"""Class scores in, class names out: the top class and the top-k with their probabilities.

The model's scores output (probabilities, or logits that get a softmax: the build looked
at its values and recorded which) is read per row; names come from the artifact's
labels file, one per line, in class-index order. A ZipMap output (one {class: score}
map per row, as skl2onnx writes) is read in its maps' order, which is the class order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

LABEL, TOP_LABELS, TOP_PROBABILITIES = "label", "top_labels", "top_probabilities"


def read_labels(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


class LabelsPostprocess:
    def __init__(self, step: Mapping[str, Any], folder: Path) -> None:
        self.labels = np.array(read_labels(Path(folder) / step["labels"]["path"]), dtype=object)
        self.output = step["output"]
        self.top_k = int(step["top_k"])
        self.logits = step["scores"] == "logits"

    def __call__(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        probabilities = self.probabilities(outputs[self.output])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.top_k]
        return {
            LABEL: self.labels[order[:, 0]],
            TOP_LABELS: self.labels[order],
            TOP_PROBABILITIES: np.take_along_axis(probabilities, order, axis=1),
        }

    def probabilities(self, scores: Any) -> np.ndarray:
        if isinstance(scores, list):  # ZipMap: a list of {class: score} maps
            scores = [list(row.values()) for row in scores]
        scores = np.asarray(scores, dtype=np.float32).reshape(len(scores), -1)
        if self.logits:
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        return scores
