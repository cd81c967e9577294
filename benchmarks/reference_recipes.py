"""Reference recipes: what a user would run instead of mlpack, gated and timed beside its candidates.

    ort-static-pc  onnxruntime's quant_pre_process, then quantize_static (QDQ, per-channel int8 weights)
    nncf-qwac      NNCF's quantize_with_accuracy_control (ONNX backend), max_drop from mlpack's gate

Each recipe is one function: the original model, the calibration rows the optimizer uses, and
where to write; it returns the path it wrote and raises when the recipe breaks on the model.
NNCF's also takes a `HeldOutGate`: mlpack's gate (same held-out rows, same metric, threshold from
the target's gate settings) as NNCF's validation function. `make_references` makes the named ones
for a `Run` (benchmarks.optimize_bench.optimize_beside passes `recipes=`): a recipe that fails
is listed with its reason in one line, never fatal. NNCF is optional: `pip install nncf`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx

from mlpack.optimize.data import EvalData
from mlpack.optimize.gate import GateSettings, Verdict, compare, output_kind
from mlpack.optimize.run import Run, first_line

ORT_STATIC_PC = "ort-static-pc"
NNCF_QWAC = "nncf-qwac"
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis


def _rows(calibration: EvalData, fixed_batch: int | None) -> list[dict[str, np.ndarray]]:
    """Calibration feeds one row at a time, or the model's fixed batch at a time."""
    return [feed for feed, _ in calibration.feeds(fixed_batch or 1, exact=fixed_batch is not None)]


def ort_static_pc(model: Path, calibration: EvalData, destination: Path, fixed_batch: int | None = None) -> Path:
    """onnxruntime's static int8 as its docs show it, on the optimizer's calibration rows."""
    ort_static_recipe(model, _rows(calibration, fixed_batch), destination)
    return destination


def ort_static_recipe(model: Path, feeds: Iterable[dict[str, np.ndarray]], destination: Path) -> str:
    """`quant_pre_process` (symbolic shape inference and graph optimization, which onnxruntime's
    docs recommend before static quantization), then `quantize_static` with QDQ, per-channel QInt8
    weights and its other defaults (MinMax). Returns what was run, in words; raises where the
    recipe breaks."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    destination.parent.mkdir(parents=True, exist_ok=True)
    recipe = "onnxruntime quant_pre_process, then quantize_static(QDQ, per_channel=True, QInt8 weights)"
    source = _at_per_channel_opset(model, destination.with_name(destination.stem + "-opset.onnx"))
    if source != model:
        recipe = f"onnx's version converter to opset {PER_CHANNEL_OPSET}, then {recipe}"
    prepared = destination.with_name(destination.stem + "-pre.onnx")
    # Its symbolic shape inference may leave sym_shape_infer_temp.onnx in the working directory.
    with contextlib.chdir(destination.parent):
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception:  # e.g. "Incomplete symbolic shape inference" (MiniLM): what onnxruntime's docs say to do
            recipe = recipe.replace("quant_pre_process", "quant_pre_process(skip_symbolic_shape=True)")
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(destination), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8)
    prepared.unlink()
    if source != model:  # the converted copy: only the quantized model stays
        source.unlink()
    return recipe


def _at_per_channel_opset(model: Path, destination: Path) -> Path:
    """Per-channel DequantizeLinear (its `axis`) needs opset 13; PP-OCRv4's models are opset 12,
    and quantize_static writes it anyway, so the model is converted first, as a user would."""
    from onnx import version_converter

    loaded = onnx.load(str(model))
    if next(o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")) >= PER_CHANNEL_OPSET:
        return model
    onnx.save(version_converter.convert_version(loaded, PER_CHANNEL_OPSET), str(destination))
    return destination


@dataclass
class HeldOutGate:
    """mlpack's gate as a validation function: the held-out rows, float's outputs on them, and the
    thresholds of the target's gate; `outputs(path, rows)` runs a model the way the gate does."""

    rows: EvalData
    reference: list[np.ndarray]
    names: list[str]
    settings: GateSettings
    outputs: Callable[[Path, EvalData], list[np.ndarray]]

    @classmethod
    def of(cls, run: Run) -> HeldOutGate:
        return cls(run.held_out, run.reference, run.output_names, run.gate,
                   lambda path, rows: run.outputs(path, rows, as_recipe=True))

    def max_drop(self) -> float:
        """How far the gate's primary metric (Verdict.quality: the worst output's cosine mean,
        top-1 agreement, or 1 - relative error; float scores 1.0) may fall and still pass."""
        allowed = {"embedding": 1 - self.settings.min_cosine_mean,
                   "regression": self.settings.max_relative_error}
        # Every other kind (labels, classification, sequence...) is gated as a share of rows that agree.
        return min(allowed.get(output_kind(ref, name, self.settings.task), 1 - self.settings.min_top1_agreement)
                   for ref, name in zip(self.reference, self.names))

    def verdict(self, path: Path, index: np.ndarray) -> tuple[Verdict, list[float]]:
        """The gate's verdict on rows `index` of the held-out rows, and its quality row by row."""
        got = self.outputs(path, self.rows.take(index))
        ref = [r[index] for r in self.reference]
        labels = self.rows.labels[index] if self.rows.labels is not None else None

        def check(rows: slice) -> Verdict:
            return compare([r[rows] for r in ref], [g[rows] for g in got], self.names, self.settings,
                           labels[rows] if labels is not None else None)

        return check(slice(None)), [check(slice(i, i + 1)).quality for i in range(len(index))]

    def validate(self, model: onnx.ModelProto, items: Iterable[int]) -> tuple[float, list[float]]:
        """NNCF's validation function: its items are row numbers of the held-out rows."""
        index = np.fromiter(items, dtype=np.int64)
        with tempfile.TemporaryDirectory(prefix="nncf-validate-") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save(model, str(path))
            verdict, per_row = self.verdict(path, index)
        return verdict.quality, per_row


def _is_transformer(model: onnx.ModelProto) -> bool:
    """A MatMul that reads a Softmax: attention, for which NNCF's docs say model_type=TRANSFORMER."""
    softmax = {out for node in model.graph.node if node.op_type == "Softmax" for out in node.output}
    return any(node.op_type == "MatMul" and softmax & set(node.input) for node in model.graph.node)


def nncf_qwac(model: Path, calibration: EvalData, destination: Path, gate: HeldOutGate,
              fixed_batch: int | None = None) -> Path:
    """NNCF's `quantize_with_accuracy_control` on the ONNX model: int8 everywhere, then layers
    reverted to float, worst first by NNCF's own ranking, until the gate's primary metric is
    within `gate.max_drop()` (absolute) of float's on the held-out rows. Its defaults otherwise
    (weights stored int8), with model_type=TRANSFORMER when the graph has attention. A model
    below opset 13 is converted first, as for onnxruntime's recipe: NNCF quantizes weights per
    channel only from opset 13 (it warns and falls back to per tensor below)."""
    # NNCF_CI is NNCF's own switch that turns its telemetry (openvino-telemetry) off before it loads:
    # a benchmark sends nothing anywhere.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf

    destination.parent.mkdir(parents=True, exist_ok=True)
    converted = _at_per_channel_opset(model, destination.with_name(destination.stem + "-opset13.onnx"))
    original = onnx.load(str(converted))
    if converted != model:
        converted.unlink()
    # NNCF logs and draws progress bars on stdout, where the benchmarks print their markdown:
    # its warnings and errors only, and its bars on stderr.
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize_with_accuracy_control(
            original,
            nncf.Dataset(_rows(calibration, fixed_batch)),
            nncf.Dataset(list(range(gate.rows.rows))),
            gate.validate,
            max_drop=gate.max_drop(),
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=calibration.rows,
            model_type=nncf.ModelType.TRANSFORMER if _is_transformer(original) else None,
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(quantized, str(destination))
    return destination


def _describe(name: str, run: Run) -> str:
    rows = run.calibration.describe()
    if name == ORT_STATIC_PC:
        return (f"onnxruntime quant_pre_process (skip_symbolic_shape=True where symbolic shape inference fails, "
                f"as onnxruntime's docs advise), then quantize_static(QDQ, per_channel=True, weight_type=QInt8, "
                f"MinMax) calibrated on the optimizer's {rows}, on the original model")
    return (f"NNCF quantize_with_accuracy_control (ONNX backend), calibrated on the optimizer's {rows}, "
            f"validated with mlpack's gate metric on its {run.held_out.describe()}, max_drop "
            f"{HeldOutGate.of(run).max_drop():g} absolute, on the original model")


def _make(name: str, model: Path, run: Run, destination: Path) -> Path:
    if name == ORT_STATIC_PC:
        return ort_static_pc(model, run.calibration, destination, run.fixed_batch)
    return nncf_qwac(model, run.calibration, destination, HeldOutGate.of(run), run.fixed_batch)


RECIPES = (ORT_STATIC_PC, NNCF_QWAC)


@dataclass
class Made:
    """One reference recipe's outcome: the model it wrote, or None and why it failed (one line)."""

    name: str
    path: Path | None
    recipe: str
    failure: str = ""


def make_references(names: Sequence[str], model: Path, run: Run, folder: Path) -> list[Made]:
    """Make each named recipe from the original `model` with the run's calibration and held-out rows;
    a recipe that breaks on the model is returned with its reason, never fatal."""
    made = []
    for name in names:
        if name not in RECIPES:
            raise ValueError(f"unknown reference recipe {name!r}: known are {', '.join(RECIPES)}")
        recipe = _describe(name, run)
        try:
            made.append(Made(name, _make(name, model, run, folder / f"{name}.onnx"), recipe))
        except Exception as exc:  # the recipe itself is what is measured: record why it broke
            where = traceback.extract_tb(exc.__traceback__)[-1]  # whose code raised: the tool's, usually
            made.append(Made(name, None, recipe, f"{type(exc).__name__} in {Path(where.filename).parent.name}/"
                                                  f"{Path(where.filename).name} {where.name}: {first_line(exc)}"))
    return made
