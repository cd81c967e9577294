"""optimize_model: run the target's passes, make the variants, gate them, time them, pick one.

The order matters: the data is checked before anything is written; every variant is
gated as soon as it is made (mixed precision needs the verdicts of the others); latency
is timed last, for all candidates together, so they share the machine's noise.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import onnx

from ..errors import InputError
from ..model_info import ModelInfo
from ..targets import Target
from . import passes, smooth
from .data import EvalData, load_data, synthetic_data
from .gate import GateSettings, compare
from .measure import fixed_batch, latencies, outputs, session, target_providers, timing_batches
from .report import Candidate, OptimizationResult
from .select import pick
from .sensitivity import LayerError, measure_layers

Log = Callable[[str], None]


class _Run:
    """State shared by the steps of one optimization."""

    def __init__(self, info: ModelInfo, target: Target, work_dir: Path, data: EvalData,
                 gate: GateSettings, log: Log) -> None:
        self.info, self.target, self.work, self.gate, self.log = info, target, work_dir, gate, log
        self.calibration, self.held_out = data.split()
        self.candidates: list[Candidate] = []
        self.skipped: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.reference: list = []
        self.output_names: list[str] = []
        self.smoothed: Path | None = None  # the smoothed float graph, when smooth-int8 ran
        self.fixed_batch: int | None = None  # the batch size the model's inputs fix, if any

    def evaluate(self, candidate: Candidate) -> Candidate:
        """Gate a candidate against float on the held-out rows (on this host's CPU)."""
        try:
            got = outputs(session(candidate.path, self.target), self.held_out)
        except Exception as exc:  # e.g. an operator this host's onnxruntime lacks a kernel for
            candidate.passed = False
            candidate.reason = f"could not run on this host's CPU, so accuracy is unmeasured ({_first_line(exc)})"
            return candidate
        verdict = compare(self.reference, got, self.output_names, self.gate, self.held_out.labels)
        candidate.passed, candidate.reason = verdict.passed, verdict.reason
        candidate.metrics, candidate.quality = verdict.metrics, verdict.quality
        return candidate

    def add(self, name: str, path: Path, recipe: str) -> Candidate:
        candidate = self.evaluate(Candidate(name, path, path.stat().st_size, recipe))
        self.candidates.append(candidate)
        self.log(f"{name}: {candidate.size_bytes:,} bytes, gate {'pass' if candidate.passed else 'FAIL'}"
                 + ("" if candidate.passed else f" ({candidate.reason})"))
        return candidate

    def find(self, name: str) -> Candidate | None:
        return next((c for c in self.candidates if c.name == name), None)


def optimize_model(
    info: ModelInfo,
    target: Target,
    work_dir: Path,
    *,
    data_path: Path | None = None,
    log: Log = lambda _: None,
    gate: GateSettings | None = None,
    latency_budget_s: float = 10.0,
    references: dict[str, tuple[Path, str]] | None = None,
) -> OptimizationResult:
    """Run the target's passes on the model and pick the variant to ship.

    `data_path` is a .npz with one array per input (and optional `labels`); without it the
    gate runs on synthetic inputs and the report says so. Bad data raises InputError
    before anything is written to `work_dir`. `references` ({name: (model, recipe)}) are
    gated and timed beside the candidates for comparison (benchmarks), never picked.
    """
    gate = gate or GateSettings()
    model = onnx.load(str(info.path))  # external data, if any, is loaded and saved inline below
    unusable = ""
    if data_path:
        data = load_data(data_path, info.signature)
    else:
        try:
            data = synthetic_data(model, info.signature)
        except InputError as exc:  # no data given and none can be made: ship float, say why
            unusable, data = exc.message, None

    work_dir.mkdir(parents=True, exist_ok=True)
    float_path = work_dir / "float.onnx"
    onnx.save(model, str(float_path))
    del model
    if data is not None:
        run = _Run(info, target, work_dir, data, gate, log)
        float_session = session(float_path, target)
        run.output_names = [o.name for o in float_session.get_outputs()]
        run.fixed_batch = fixed_batch(float_session)
        try:
            run.reference = outputs(float_session, run.held_out)
        except Exception as exc:  # e.g. ZipMap outputs (lists of dicts) cannot be compared
            unusable = f"the model's outputs cannot be compared ({_first_line(exc)})"
    if unusable:
        return _float_only(float_path, target, gate, unusable, data_path)
    baseline = run.add("float", float_path, "the model as given, weights inline")
    baseline.passed, baseline.reason = True, "the reference the others are compared with"

    quant_base = _float_passes(run, float_path)
    layers: list[LayerError] = []
    for variant in target.optimize.variants:
        try:
            if variant == "mixed-int8":
                layers = _mixed(run, quant_base)
            else:
                _VARIANTS[variant](run, quant_base)
        except Exception as exc:  # a recipe that breaks on this model is skipped, not fatal
            run.skipped.append((variant, f"the recipe failed on this model: {_first_line(exc)}"))
            log(f"{variant}: skipped, the recipe failed: {_first_line(exc)}")

    for name, (path, recipe) in (references or {}).items():
        run.add(name, path, recipe).reference = True

    providers = target_providers(target)
    latency_note, measured_on = "", ""
    if providers:
        measured_on = providers[0]
        _time_all(run, providers, latency_budget_s)
    else:
        latency_note = (f"not measured on target: {target.runtime.execution_providers[0]} is not available "
                        "on this host")
        run.notes.append(f"Latency was not measured on the target: {target.runtime.execution_providers[0]} "
                         "is not available on this host. Accuracy was measured with the CPU provider.")

    chosen, why = pick(run.candidates, target.optimize.policy, target.optimize.tolerance, bool(providers))
    _explain(run, chosen, data)
    return OptimizationResult(
        candidates=run.candidates, chosen=chosen, data_source=data.source, why=why,
        target=target.name, policy=target.optimize.policy, gate=gate,
        latency_note=latency_note, measured_on=measured_on, skipped=run.skipped,
        sensitive_layers=[(e.node, e.relative_error) for e in layers], notes=run.notes,
    )


def _float_only(float_path: Path, target: Target, gate: GateSettings, problem: str,
                data_path: Path | None) -> OptimizationResult:
    baseline = Candidate("float", float_path, float_path.stat().st_size, "the model as given, weights inline",
                         reason="the reference")
    return OptimizationResult(
        candidates=[baseline], chosen=baseline, data_source=str(data_path or "no data"),
        why=f"kept the float model: no variant can be checked, since {problem}",
        target=target.name, policy=target.optimize.policy, gate=gate,
        latency_note="not measured: nothing to compare", notes=[
            f"No variant was made: {problem}. Pass --calibration FILE.npz with real inputs to enable "
            "the optimizer's accuracy gate."],
    )


# ---- steps --------------------------------------------------------------------------


def _float_passes(run: _Run, float_path: Path) -> Path:
    """Run the float passes; returns the graph the quantizers start from."""
    opt = run.target.optimize
    base = float_path
    done = []
    if "prune" in opt.passes:
        try:
            base = passes.prune(float_path, run.work / "pruned.onnx")
            done.append("pruned (constant folding, dead nodes, unused and duplicate initializers)")
        except Exception as exc:
            run.skipped.append(("prune", f"the pass failed on this model: {_first_line(exc)}"))
    if base == float_path:  # never touch the shipped float file: name nodes in a copy
        base = Path(shutil.copyfile(float_path, run.work / "base.onnx"))
    _name_nodes(base)
    final = base
    if "graph" in opt.passes:
        try:
            final = passes.graph_optimize(base, run.work / "float-optimized.onnx", opt.graph_level)
            done.append(f"onnxruntime graph optimizations at the portable '{opt.graph_level}' level, saved offline")
        except Exception as exc:
            run.skipped.append(("graph", f"the pass failed on this model: {_first_line(exc)}"))
    if done:
        if final == base:  # prune only: keep the pruned file under the candidate's name
            final = Path(passes._save(onnx.load(str(base)), run.work / "float-optimized.onnx"))
        run.add("float-optimized", final, "; ".join(done))
    # Quantizers start from the pruned graph: they do not know onnxruntime's fused operators,
    # and onnxruntime applies the same fusions at load time on the target anyway.
    return base


def _name_nodes(path: Path) -> None:
    """Quantizers select nodes by name; give every node one."""
    model = onnx.load(str(path))
    seen = set()
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            changed = True
        seen.add(node.name)
    if changed:
        onnx.save(model, str(path))


def _dynamic(run: _Run, base: Path) -> None:
    weight = run.target.optimize.weight_type
    path = passes.dynamic_int8(base, run.work / "dynamic-int8.onnx", weight_type=weight)
    run.add("dynamic-int8", path, f"weights {weight} per channel, activations quantized at run time")


def _static(run: _Run, base: Path) -> None:
    model = onnx.load(str(base), load_external_data=False)
    if not any(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node):
        run.skipped.append(("static-int8", "no convolutions: static QDQ pays off for conv layers, "
                                           "and dynamic-int8 covers MatMul layers without calibration"))
        return
    if run.calibration.synthetic:
        run.notes.append("static-int8 was calibrated on synthetic inputs; real data (--calibration) gives "
                         "activation ranges that fit real requests")
    weight = run.target.optimize.weight_type
    path = passes.static_int8(base, run.work / "static-int8.onnx", run.calibration, weight_type=weight,
                              fixed_batch=run.fixed_batch)
    run.add("static-int8", path, f"QDQ int8 ({weight} weights per channel), activation ranges calibrated on "
                                 f"{run.calibration.rows} rows")


def _smooth(run: _Run, base: Path) -> None:
    weight = run.target.optimize.weight_type
    calibration_reference = outputs(session(base, run.target), run.calibration)
    trials = []
    for strength in smooth.STRENGTHS:
        plan = smooth.plan(base, run.calibration, strength)
        if not plan:
            run.skipped.append(("smooth-int8", "no MatMul reads an activation with constant weights"))
            return
        smoothed = smooth.apply(base, run.work / f"smoothed-{strength}.onnx", plan)
        path = passes.dynamic_int8(smoothed, run.work / f"smooth-int8-{strength}.onnx", weight_type=weight)
        got = outputs(session(path, run.target), run.calibration)
        quality = compare(calibration_reference, got, run.output_names, run.gate).quality
        run.log(f"smooth-int8 at strength {strength}: quality {quality:.4f} on the calibration rows")
        trials.append((quality, strength, smoothed, path, len(plan)))
    quality, strength, smoothed, path, tensors = max(trials, key=lambda t: t[0])
    for _, _, other_smoothed, other_path, _ in trials:
        if other_path != path:
            other_smoothed.unlink()
            other_path.unlink()
    run.add("smooth-int8", path, f"as dynamic-int8, after moving activation range into the weights on "
                                 f"{tensors} tensors (SmoothQuant-style, strength {strength} chosen from "
                                 f"{', '.join(map(str, smooth.STRENGTHS))} on the calibration rows)")
    run.smoothed = smoothed


def _compact(run: _Run, base: Path) -> None:
    model = onnx.load(str(base), load_external_data=False)
    if not passes.embedding_tables(model):
        run.skipped.append(("compact-int8", "no large embedding tables to store in 4 bits"))
        return
    smoothed = run.smoothed if run.smoothed and run.find("smooth-int8").passed else None
    tables = passes.int4_tables(smoothed or base, run.work / "int4-tables.onnx")
    weight = run.target.optimize.weight_type
    path = passes.dynamic_int8(tables, run.work / "compact-int8.onnx", weight_type=weight)
    tables.unlink()
    run.add("compact-int8", path, "embedding tables in 4 bits (blocks of 32), other weights as "
                                  + ("smooth-int8" if smoothed else "dynamic-int8"))


def _mixed(run: _Run, base: Path) -> list[LayerError]:
    """Keep the layers whose int8 error is largest in float, as few as the gate allows:
    the worst one, then two, four, ... until the variant passes the gate. It reuses the
    int8 recipe that suits the model: static for convolutions, else smoothed or dynamic."""
    int8 = {c.name: c for c in run.candidates if c.name in ("dynamic-int8", "smooth-int8", "static-int8", "compact-int8")}
    passing = [name for name, c in int8.items() if c.passed]
    if passing:
        run.skipped.append(("mixed-int8", f"{passing[0]} passes the gate as is; no layer needs to stay float"))
        return measure_layers(run.smoothed or base, run.calibration)
    weight = run.target.optimize.weight_type
    if "static-int8" in int8:
        recipe, start = "static-int8", base
        build = lambda kept, path: passes.static_int8(start, path, run.calibration, weight_type=weight, exclude=kept,
                                                      fixed_batch=run.fixed_batch)
    elif "smooth-int8" in int8 and run.smoothed:
        recipe, start = "smooth-int8", run.smoothed
        build = lambda kept, path: passes.dynamic_int8(start, path, weight_type=weight, exclude=kept)
    elif "dynamic-int8" in int8:
        recipe, start = "dynamic-int8", base
        build = lambda kept, path: passes.dynamic_int8(start, path, weight_type=weight, exclude=kept)
    else:
        run.skipped.append(("mixed-int8", "needs an int8 variant (dynamic, smooth or static) to start from"))
        return []
    layers = measure_layers(start, run.calibration)
    if not layers:
        run.skipped.append(("mixed-int8", "no MatMul, Gemm or Conv layers with constant weights"))
        return layers
    keep = 1
    while True:
        kept = [e.node for e in layers[:keep]]
        path = build(kept, run.work / "mixed-int8.onnx")
        candidate = run.evaluate(Candidate("mixed-int8", path, path.stat().st_size))
        run.log(f"mixed-int8 ({recipe}) with {keep} of {len(layers)} layers in float: gate "
                f"{'pass' if candidate.passed else 'FAIL'}")
        if candidate.passed or keep >= len(layers):
            break
        keep = min(len(layers), keep * 2)
    if keep >= len(layers):
        path.unlink()
        run.skipped.append(("mixed-int8", f"the gate failed until all {len(layers)} layers were float, "
                                          "which is the float model"))
        return layers
    candidate.recipe = (f"as {recipe}, but the {keep} layer(s) of {len(layers)} with the largest measured "
                        f"int8 error kept float: {', '.join(kept[:4])}{', ...' if keep > 4 else ''}")
    run.candidates.append(candidate)
    run.log(f"mixed-int8: {candidate.size_bytes:,} bytes, gate pass")
    return layers


def _fp16(run: _Run, base: Path) -> None:
    path = passes.fp16(base, run.work / "fp16.onnx")
    run.add("fp16", path, "weights and arithmetic in float16, float32 inputs and outputs")


_VARIANTS: dict[str, Callable[[_Run, Path], None]] = {
    "dynamic-int8": _dynamic,
    "smooth-int8": _smooth,
    "static-int8": _static,
    "compact-int8": _compact,
    "fp16": _fp16,
}


def _time_all(run: _Run, providers: list[str], budget_s: float) -> None:
    sessions = {}
    for c in run.candidates:
        try:
            sessions[c.name] = session(c.path, run.target, providers)
        except Exception as exc:  # already failed the gate for the same reason; not timed
            run.log(f"{c.name}: not timed, it does not load ({_first_line(exc)})")
    # Only batch sizes the model accepts: its fixed batch, if it has one.
    batches = timing_batches(sessions["float"], run.target.optimize.latency_batch)
    for batch in batches:
        run.log(f"timing {len(sessions)} candidates at batch {batch} on {providers[0]}")
        for name, lat in latencies(sessions, run.held_out, batch, budget_s=budget_s / len(batches)).items():
            run.find(name).latency[batch] = lat


def _explain(run: _Run, chosen: Candidate, data: EvalData) -> None:
    if data.synthetic:
        run.notes.insert(0, "Accuracy was measured on synthetic inputs made from the model's signature, not on "
                            "real data: it shows the variant computes the same function, not how it does on "
                            "your data. Pass --calibration FILE.npz to gate on real inputs.")
    m = chosen.metrics
    if "accuracy" in m and chosen is not run.candidates[0]:
        within = m["accuracy_drop"] <= run.gate.max_accuracy_drop + 1e-12
        run.notes.insert(0, f"{chosen.name} keeps accuracy {m['accuracy']:.2%} against float's "
                            f"{m['float_accuracy']:.2%} on {run.held_out.rows} held-out labelled rows: "
                            f"{'within' if within else 'outside'} the gate's "
                            f"{run.gate.max_accuracy_drop * 100:.1f} points.")
    if run.calibration is not run.held_out:
        run.notes.append(f"Calibration used the first {run.calibration.rows} rows; the gate used the other "
                         f"{run.held_out.rows}.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:240]
