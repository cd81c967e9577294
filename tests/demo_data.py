"""The demo's validation rows, for tests that send them through a model.

The demo's validation.npz is the quarter of the digits data that training never saw. A
build calibrates on its first rows and gates on the rest (optimize/data.py,
`EvalData.split`): a test that checks accuracy or predictions must use rows calibration did
not see (`held_out`, `held_out_demo_rows`); `demo_rows` is for tests where any valid row
will do (a request's shape, a served answer equal to the model's own).
"""

from __future__ import annotations

import numpy as np

from mlpack.model.demo import demo_model


def _validation() -> tuple[np.ndarray, np.ndarray]:
    _, data = demo_model()
    with np.load(data) as archive:
        return archive["pixels"], archive["labels"]


def demo_rows(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The first n validation rows and their labels."""
    pixels, labels = _validation()
    return pixels[:n], labels[:n]


def held_out(rows: np.ndarray) -> np.ndarray:
    """The rows the gate measures on: all but the calibration quarter (at most 128 rows),
    written here on its own rather than read from the optimizer it checks."""
    return rows[min(128, len(rows) // 4):]


def held_out_demo_rows(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The last n validation rows (all held-out ones without n): never calibration rows."""
    pixels, labels = _validation()
    pixels, labels = held_out(pixels), held_out(labels)
    return (pixels, labels) if n is None else (pixels[-n:], labels[-n:])
