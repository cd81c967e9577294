"""--labels: class names for a classifier's scores, from a file or from the model itself.

`--labels labels.txt` holds one name per line in class-index order; `--labels model`
takes the classes a classifier node carries (skl2onnx writes `classlabels_strings` or
`classlabels_int64s` on ZipMap, LinearClassifier, TreeEnsembleClassifier, SVMClassifier).
The scores are the output with one value per class: a float [batch, classes] tensor, or
a ZipMap's list of {class: score} maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ..errors import InputError
from ..model.info import ModelInfo, TensorSpec
from .files import Source, file_ref
from .request import MODEL_LABELS
from .schema import LabelsPostprocess

LABELS_FILE = "labels.txt"
_CLASS_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")
_FIX = "pass --labels labels.txt with one class name per line, in class-index order"


def read_label_file(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"labels file {path} does not exist", _FIX)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"labels file {path} is not UTF-8 text", _FIX) from None
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
    if blank is not None:
        raise InputError(f"labels file {path.name} has an empty line {blank}", _FIX)
    if len(lines) < 2:
        raise InputError(f"labels file {path.name} names {len(lines)} class(es); a classifier has at least 2", _FIX)
    return [line.strip() for line in lines]


def model_classes(model_path: Path) -> tuple[list[str], str] | None:
    """The class labels a classifier node of the model carries, and which node, if any does."""
    model = onnx.load(str(model_path), load_external_data=False)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                names = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
                if len(names) >= 2:
                    return names, f"the model's {node.op_type} node ({attribute.name})"
    return None


def resolve_labels(option: str, top_k: int, info: ModelInfo) -> tuple[LabelsPostprocess, Source]:
    """The step (its scores kind is checked later, on the model's answer) and the labels file
    to ship: the names one per line, stripped, as the runtime reads them."""
    if option == MODEL_LABELS:
        found = model_classes(info.path)
        if found is None:
            raise InputError("--labels model: the model carries no class labels (no classlabels_* attribute)", _FIX)
        names, source = found
    else:
        names, source = read_label_file(Path(option)), f"--labels {Path(option).name}"
    content = "".join(f"{name}\n" for name in names).encode("utf-8")
    output = scores_output(info.signature.outputs, len(names))
    step = LabelsPostprocess(labels=file_ref(content, LABELS_FILE), count=len(names), source=source,
                             output=output.name, scores="probabilities", top_k=min(top_k, len(names)))
    return step, content


def scores_output(outputs: list[TensorSpec], count: int) -> TensorSpec:
    """The output with one score per class: a float [batch, count] tensor, else a ZipMap."""
    def width(spec: TensorSpec):
        return spec.shape[1] if spec.shape and len(spec.shape) == 2 else None

    floats = [o for o in outputs if o.is_tensor and np.dtype(o.dtype).kind == "f" and o.shape and len(o.shape) == 2]
    zipmaps = [o for o in outputs if o.dtype.startswith("seq(map(")]
    exact = [o for o in floats if width(o) == count]
    free = [o for o in floats if not isinstance(width(o), int)]
    choice = (exact or zipmaps or free or [None])[0]
    if choice is None:
        sizes = ", ".join(f"{o.name} {o.dtype} {o.shape_text()}" for o in outputs)
        raise InputError(f"no model output gives one score per class for {count} labels (outputs: {sizes})",
                         "check the labels file against the model's classes")
    return choice


def scores_kind(values, count: int, output: str) -> str:
    """'probabilities' when each row is already a distribution, else 'logits' (softmax at serving).
    Raises when the output does not have one value per label."""
    if isinstance(values, list):  # ZipMap
        values = [list(row.values()) for row in values]
    scores = np.asarray(values, dtype=np.float64)
    scores = scores.reshape(len(scores), -1)
    if scores.shape[1] != count:
        raise InputError(f"model output {output!r} gives {scores.shape[1]} scores per row but the labels name "
                         f"{count} classes", _FIX)
    is_distribution = (scores >= -1e-6).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    return "probabilities" if is_distribution else "logits"
