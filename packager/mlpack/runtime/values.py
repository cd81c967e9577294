"""Model outputs that are not tensors: ONNX sequences and maps, as onnxruntime returns them.

skl2onnx's default classifier output (ZipMap) is `seq(map(int64|string, float))`:
onnxruntime returns a list with one `{class: probability}` dict per row. Served as JSON,
that is what a client gets; compared or counted, it is a table: one row per input row,
one column per class, in class order (sorted, as scikit-learn orders `classes_`).
mlpack's accuracy gate reads such outputs through `as_array`; a protocol that carries
only tensors can use `as_table` for the same columns.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def is_table(value: Any) -> bool:
    """A map, or a sequence of maps: what ZipMap and DictVectorizer-like outputs are."""
    if isinstance(value, Mapping):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def columns_of(rows: Sequence[Mapping]) -> list:
    """The classes of a sequence of maps, sorted (scikit-learn's `classes_` order)."""
    keys = set()
    for row in rows:
        keys.update(row)
    return sorted(keys)


def as_table(value: Any, columns: Sequence | None = None) -> tuple[np.ndarray, list]:
    """A map, or a sequence of maps, as a [rows, columns] array, and its columns.

    `columns` fixes the order (e.g. the reference's); a key missing from a row is NaN, so
    a comparison with the reference fails rather than shifting columns."""
    rows = [value] if isinstance(value, Mapping) else list(value)
    keys = list(columns) if columns is not None else columns_of(rows)
    table = np.array([[row.get(key, np.nan) for key in keys] for row in rows], dtype=np.float64)
    return table.reshape(len(rows), len(keys)), keys


def as_array(value: Any) -> np.ndarray:
    """Any onnxruntime output as one array: tensors as they are, maps and sequences of maps
    as their table (columns sorted), a sequence of tensors as all its values in order."""
    if isinstance(value, np.ndarray):
        return value
    if is_table(value):
        return as_table(value)[0]
    if isinstance(value, (list, tuple)):
        parts = [np.ravel(np.asarray(v)) for v in value]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return np.asarray(value)
