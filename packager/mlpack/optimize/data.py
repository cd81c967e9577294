"""The data the optimizer calibrates and gates on: the user's `.npz`, or synthetic inputs.

A calibration file holds one array per model input (by input name, first axis = rows)
and optionally the labels, under `labels` or scikit-learn's `y`. Everything is checked against the model's signature before
anything is written, and a mismatch is one line naming the input and the shape expected.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from ..errors import InputError
from ..model.info import Signature, TensorSpec

LABELS = "labels"
LABEL_KEYS = (LABELS, "y")  # `y` is scikit-learn's name for them, unless a model input is called so
SYNTHETIC_ROWS = 64
STREAM_ROWS = 64  # rows run at once when outputs are compared...
STREAM_BYTES = 8 << 20  # ...or fewer, so that one batch's inputs stay under this (images): memory stays bounded
SYNTHETIC_SEQUENCE = 16  # length given to symbolic non-batch axes (sequence, tokens...)
# Operators that divide the spatial axes by their strides; ConvTranspose multiplies them again.
DOWNSAMPLING = ("Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool")
SAMPLE_SHAPE_FIX = "pass --sample-shape INPUT=DIMS with the whole shape of one request, e.g. image=1x3x320x480"

SampleShapes = dict[str, tuple[int, ...]]  # --sample-shape: input name -> the shape of one request


@dataclass
class EvalData:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str  # said in the report: where accuracy was measured
    synthetic: bool

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def describe(self) -> str:
        """How many rows and of what kind, for logs and recipes: synthetic rows are never called
        calibration data."""
        return f"{self.rows} {'synthetic' if self.synthetic else 'real'} rows"

    def take(self, rows: slice | np.ndarray) -> EvalData:
        labels = self.labels[rows] if self.labels is not None else None
        return EvalData({k: v[rows] for k, v in self.inputs.items()}, labels, self.source, self.synthetic)

    def stream_rows(self) -> int:
        """Rows to run at once: STREAM_ROWS, or fewer when a row's inputs are large, so that a
        batch (and its activations) stays near STREAM_BYTES of inputs."""
        per_row = sum(v[:1].nbytes for v in self.inputs.values()) or 1
        return max(1, min(STREAM_ROWS, STREAM_BYTES // per_row))

    def batch(self, size: int) -> dict[str, np.ndarray]:
        """`size` rows for latency runs, repeating rows when the data has fewer."""
        index = np.arange(size) % self.rows
        return {k: v[index] for k, v in self.inputs.items()}

    def feeds(self, size: int, *, exact: bool = False) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """Every row in batches of `size`, each with the number of its rows that are real.

        With `exact` (for a model whose inputs fix the batch size) a short last batch is
        filled up with rows from the start, whose outputs the caller drops.
        """
        for start in range(0, self.rows, size):
            real = min(size, self.rows - start)
            if real == size or not exact:
                yield {k: v[start : start + real] for k, v in self.inputs.items()}, real
            else:
                index = np.arange(start, start + size) % self.rows
                yield {k: v[index] for k, v in self.inputs.items()}, real

    def split(self, min_rows: int = 32) -> tuple[EvalData, EvalData]:
        """(calibration, gate): disjoint rows when there are enough, so the gate is held out."""
        if self.rows < min_rows:
            return self, self
        cut = min(128, self.rows // 4)
        return self.take(slice(0, cut)), self.take(slice(cut, None))


def _expected(spec: TensorSpec) -> str:
    return f"{spec.type_text()} {spec.shape_text()}"


def load_data(path: Path, signature: Signature) -> EvalData:
    """Read and check a calibration `.npz` against the model's inputs."""
    fix = "save one array per model input with np.savez(FILE, **{input_name: array}, labels=...)"
    if not path.is_file():
        raise InputError(f"calibration file {path} does not exist", fix)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"calibration file {path} is not a readable .npz ({exc})", fix) from exc

    specs = [s for s in signature.inputs if s.is_tensor]
    names = {s.name for s in specs}
    label_keys = [key for key in LABEL_KEYS if key in arrays and key not in names]
    if len(label_keys) > 1:
        raise InputError(f"calibration file {path.name} has labels under both {' and '.join(label_keys)}",
                         "keep one of them (labels or y)")
    unknown = sorted(set(arrays) - names - set(label_keys))
    if unknown:
        raise InputError(
            f"calibration file {path.name} has array {unknown[0]!r}, which is not a model input "
            f"(inputs: {', '.join(sorted(names))})",
            fix,
        )
    rows: int | None = None
    for spec in specs:
        if spec.name not in arrays:
            if spec.optional:  # the model's default (or no value), as a request that leaves it out
                continue
            raise InputError(
                f"calibration file {path.name} lacks input {spec.name!r} (expected {_expected(spec)})", fix
            )
        if spec.is_string and arrays[spec.name].dtype.kind in "US":
            arrays[spec.name] = _strings(arrays[spec.name])
        array = arrays[spec.name]
        problem = _shape_problem(array, spec)
        if problem:
            raise InputError(
                f"calibration input {spec.name!r} {problem}; expected {_expected(spec)}", fix
            )
        if rows is not None and len(array) != rows:
            raise InputError(
                f"calibration input {spec.name!r} has {len(array)} rows but other inputs have {rows}; "
                f"expected {_expected(spec)} with the same first axis", fix,
            )
        rows = len(array)
    if rows is None:
        raise InputError("the model has no tensor inputs to calibrate", "nothing to optimize on data")
    labels = arrays[label_keys[0]] if label_keys else None
    if labels is not None and (labels.ndim != 1 or len(labels) != rows):
        raise InputError(
            f"calibration labels have shape {list(labels.shape)}; expected [{rows}] (one label per row)", fix
        )
    return EvalData({s.name: arrays[s.name] for s in specs if s.name in arrays}, labels,
                    f"calibration data {path.name} ({rows} rows)", False)


def _strings(array: np.ndarray) -> np.ndarray:
    """Text saved in an .npz (numpy's fixed-width str or bytes) as the object array onnxruntime takes."""
    return (np.char.decode(array, "utf-8") if array.dtype.kind == "S" else array).astype(object)


def _shape_problem(array: np.ndarray, spec: TensorSpec) -> str | None:
    if array.dtype.name != spec.dtype:
        return f"has dtype {array.dtype.name}"
    if array.ndim == 0 or array.shape[0] == 0:
        return "is empty"
    if spec.shape is not None:
        if array.ndim != len(spec.shape):
            return f"has shape {list(array.shape)}"
        # A fixed first axis is still the row axis: rows are fed in batches of that size.
        for axis, (got, want) in enumerate(zip(array.shape, spec.shape)):
            if axis > 0 and isinstance(want, int) and got != want:
                return f"has shape {list(array.shape)}"
    return None


def check_sample_shapes(shapes: SampleShapes, signature: Signature, *, with_data: bool = False) -> None:
    """--sample-shape items against the model's inputs: one line naming the first problem."""
    if shapes and with_data:
        raise InputError("--sample-shape sizes synthetic inputs, and --calibration gives real ones",
                         "drop --sample-shape: the calibration data's own shapes are used")
    specs = {s.name: s for s in signature.inputs if s.is_tensor}
    for name, dims in shapes.items():
        spec = specs.get(name)
        if spec is None:
            raise InputError(f"--sample-shape {name}: the model has no tensor input {name!r} "
                             f"(inputs: {', '.join(specs)})", SAMPLE_SHAPE_FIX)
        text = "x".join(map(str, dims))
        if spec.shape is not None and len(dims) != len(spec.shape):
            raise InputError(f"--sample-shape {name}={text} has {len(dims)} axes; input {name!r} has "
                             f"{len(spec.shape)}: {spec.shape_text()}", SAMPLE_SHAPE_FIX)
        fixed = [(i, want) for i, want in enumerate(spec.shape or []) if isinstance(want, int) and dims[i] != want]
        if fixed:
            axis, want = fixed[0]
            raise InputError(f"--sample-shape {name}={text}: axis {axis} of input {name!r} is fixed at {want} "
                             f"({spec.shape_text()})", SAMPLE_SHAPE_FIX)


def synthetic_data(model: onnx.ModelProto, signature: Signature, rows: int = SYNTHETIC_ROWS, seed: int = 0,
                   shapes: SampleShapes | None = None) -> EvalData:
    """Inputs made from the signature when the user gives no data.

    Floats are standard normal; integer inputs that index a table (Gather) stay within
    the table, others are 0/1 (masks, flags). Accuracy on such data says whether the
    variant computes the same function, not how well it does on real inputs.

    Free axes take the size `shapes` gives (--sample-shape, the shape of one request: its
    first axis is the rows'); else, for an input whose convolutions or pools divide its
    spatial axes (strides), a multiple of that division, so that feature maps of every
    scale line up again where the model adds or concatenates them; else SYNTHETIC_SEQUENCE.
    """
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(model)
    shapes = shapes or {}
    inputs = {}
    for spec in signature.inputs:
        if spec.optional:  # left out, as most requests do: the model's default applies
            continue
        if not spec.is_tensor:
            raise InputError(
                f"input {spec.name!r} is a {spec.dtype}, which mlpack cannot make synthetic data for",
                "pass --calibration FILE.npz with real inputs",
            )
        if spec.name in shapes:
            shape = [rows, *shapes[spec.name][1:]]
        else:
            dims = spec.shape if spec.shape is not None else [None, SYNTHETIC_SEQUENCE]
            free = _free_size(model, spec.name) if len(dims) >= 3 else SYNTHETIC_SEQUENCE
            shape = [rows] + [d if isinstance(d, int) else free for d in dims[1:]]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            high = bounds.get(spec.name, 2)
            inputs[spec.name] = rng.integers(0, high, size=shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif spec.is_string and (vocabulary := model_vocabulary(model)).words:
            inputs[spec.name] = vocabulary.sample(rng, shape)
        else:
            raise InputError(
                f"input {spec.name!r} has dtype {spec.dtype}, for which mlpack makes no synthetic data",
                "pass --calibration FILE.npz with real inputs",
            )
    # Mask-like inputs of all ones keep every position attended, as real requests mostly do.
    for name, array in inputs.items():
        if "mask" in name.lower():
            inputs[name] = np.ones_like(array)
    given = f", shaped by --sample-shape {', '.join(shapes)}" if shapes else ""
    return EvalData(inputs, None, f"synthetic inputs ({rows} rows made from the signature{given})", True)


def _free_size(model: onnx.ModelProto, name: str) -> int:
    """The size for the free axes of image-like input `name`: SYNTHETIC_SEQUENCE, or at least twice
    the model's deepest downsampling of it, as a multiple of that (64 for a stride-32 backbone)."""
    factor = downsampling(model, name)
    return factor * -(-max(SYNTHETIC_SEQUENCE, 2 * factor) // factor)


def downsampling(model: onnx.ModelProto, name: str) -> int:
    """How many times strided convolutions and pools divide tensor `name`'s spatial axes on the
    path that divides them most (1: never). Nodes are in topological order, as ONNX requires."""
    reach = {name: 1.0}
    deepest = 1.0
    for node in model.graph.node:
        seen = [reach[t] for t in node.input if t in reach]
        if not seen:
            continue
        factor = max(seen)
        strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [])
        if strides and node.op_type in DOWNSAMPLING:
            factor *= max(strides)
        elif strides and node.op_type == "ConvTranspose":
            factor /= max(strides)
        deepest = max(deepest, factor)
        reach.update((out, factor) for out in node.output)
    return max(1, round(deepest))


@dataclass(frozen=True)
class Vocabulary:
    """The strings a model knows: tokens its text features count, categories it encodes."""

    words: tuple[str, ...]
    sentences: bool  # the model tokenizes its input (TfIdfVectorizer): rows are several words

    def sample(self, rng: np.random.Generator, shape: list[int]) -> np.ndarray:
        cells = int(np.prod(shape))
        if self.sentences:  # 1 to 8 known words, so that every row exercises the features
            lengths = rng.integers(1, 9, size=cells)
            values = [" ".join(rng.choice(self.words, size=n)) for n in lengths]
        else:
            values = list(rng.choice(self.words, size=cells))
        return np.array(values, dtype=object).reshape(shape)


# Where a model's string vocabulary lives: (op type, attribute, whether inputs are text).
_VOCABULARY_ATTRIBUTES = (
    ("TfIdfVectorizer", "pool_strings", True),
    ("LabelEncoder", "keys_strings", False),
    ("CategoryMapper", "cats_strings", False),
    ("OneHotEncoder", "cats_strings", False),
)


def model_vocabulary(model: onnx.ModelProto) -> Vocabulary:
    """String inputs' synthetic values come from the model itself: the tokens of its text
    features (sentences of them), else the categories it encodes (one per value)."""
    for want_text in (True, False):
        words: dict[str, None] = {}
        for node in model.graph.node:
            for op, name, text in _VOCABULARY_ATTRIBUTES:
                if node.op_type == op and text == want_text:
                    for attribute in node.attribute:
                        if attribute.name == name:
                            words.update((w.decode("utf-8", "replace"), None) for w in attribute.strings)
        if words:
            return Vocabulary(tuple(words), sentences=want_text)
    return Vocabulary((), sentences=False)


def _index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Graph inputs used as Gather indices into an initializer: their valid range."""
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = tables[node.input[0]]
            bounds[node.input[1]] = min(bounds.get(node.input[1], 1 << 62), dims[axis])
    return bounds
