"""The embedded demo: a digits classifier that mlpack trains and converts offline.

scikit-learn ships the digits data set, so the demo needs no download. The held-out
split is saved as the demo's validation data (inputs by name plus `labels`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

DEMO_NAME = "digits-demo"
INPUT_NAME = "pixels"


def cache_dir() -> Path:
    base = os.environ.get("MLPACK_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "mlpack" if base else Path.home() / ".cache" / "mlpack"


def demo_model() -> tuple[Path, Path]:
    """Return (model.onnx, validation.npz), training and converting them on first use."""
    from importlib.metadata import version

    # Keyed by the scikit-learn version: its training is deterministic for a given version
    # (v2: the converted graph has a fixed name, so two machines make the same bytes).
    folder = cache_dir() / f"demo-v2-sklearn{version('scikit-learn')}"
    model, data = folder / f"{DEMO_NAME}.onnx", folder / "validation.npz"
    if model.is_file() and data.is_file():
        return model, data
    folder.mkdir(parents=True, exist_ok=True)
    onnx_bytes, x_val, y_val = _train()
    # Write beside the final names and rename, so a concurrent build never sees half a file.
    for path, write in (
        (model, lambda fh: fh.write(onnx_bytes)),
        (data, lambda fh: np.savez_compressed(fh, **{INPUT_NAME: x_val, "labels": y_val})),
    ):
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as fh:
            write(fh)
        os.replace(fh.name, path)
    return model, data


def _train() -> tuple[bytes, np.ndarray, np.ndarray]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=200, random_state=0)
    clf.fit(x_train, y_train)
    onx = convert_sklearn(
        clf,
        initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
        # A plain probability tensor (no ZipMap) so every output is an ndarray.
        options={id(clf): {"zipmap": False}},
        target_opset=17,
        name="mlpack-demo",  # not skl2onnx's random default: the same demo model on every machine
    )
    onx.doc_string = "mlpack demo: scikit-learn MLP on the digits data set"
    return onx.SerializeToString(), x_val, y_val.astype(np.int64)
