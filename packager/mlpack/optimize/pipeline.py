"""optimize_model: run the target's passes, make the variants, gate them, time them, pick one.

The order matters: the data is checked before anything is written; every variant is
gated as soon as it is made (mixed precision needs the verdicts of the others); latency
is timed last, for all candidates together, so they share the machine's noise.

`optimize_model` is `make_candidates` then `time_and_pick`; a benchmark calls the two
itself to gate and time models of its own beside the candidates (`Run.add_reference`).
"""

from __future__ import annotations

import time
from pathlib import Path

import onnx

from ..errors import InputError
from ..model.locale_ops import PORTABLE_LOCALE, make_portable
from ..model.files import copy_model, data_file, model_bytes, save_model, stored_external
from ..model.info import ModelInfo
from ..pinned_runtime import for_target
from ..pinned_runtime.compat import Fit
from ..progress import Progress
from ..targets import Target
from . import passes
from .data import SampleShapes, check_sample_shapes, load_data, synthetic_data
from .gate import GateSettings, near_ties
from .measure import fixed_batch, latencies, session, timing_batches
from .report import Candidate, OptimizationResult, copy_latency, timed_as
from .run import Log, Run, first_line
from .select import pick, pinned
from .variants import REGISTRY, pinned_and_read

TIMING_BUDGET_S = 10.0  # seconds of latency timing for all candidates and batch sizes together
HELD = "passed the gate on synthetic inputs only, which say nothing about real data"
CALIBRATE = "pass --calibration FILE.npz with real inputs"
COULD_NOT_RUN = "could not run"  # how Run.gated starts the reason of a candidate that did not run


def optimize_model(
    info: ModelInfo,
    target: Target,
    work_dir: Path,
    *,
    data_path: Path | None = None,
    log: Log = lambda _: None,
    gate: GateSettings | None = None,
    progress: Progress | None = None,
    variant: str | None = None,
    sample_shapes: SampleShapes | None = None,
) -> OptimizationResult:
    """Run the target's passes on the model and pick the variant to ship.

    `data_path` is a .npz with one array per input (and optional `labels`); without it the
    gate runs on synthetic inputs (shaped by `sample_shapes`, if given) and the report says
    so, and no variant whose accuracy depends on the data ships unless the gate allows it.
    Bad data raises InputError before anything is written to `work_dir`. `variant` pins the
    pick (`--variant`): it must pass the gate, and it ships whatever the timing says.
    """
    if variant is not None:
        check_variant(target, variant)
        data_dependent = variant in REGISTRY and REGISTRY[variant].data_dependent
        if data_dependent and data_path is None and (gate or GateSettings()).synthetic != "allow":
            raise InputError(f"--variant {variant} cannot ship without real data: its accuracy depends on the "
                             "data, and the gate would run on synthetic inputs",
                             "pass --calibration FILE.npz with real inputs, or --gate synthetic=allow")
    run = make_candidates(info, target, work_dir, data_path=data_path, log=log, gate=gate,
                          sample_shapes=sample_shapes, only=variant)
    run.progress = progress  # bars for the timing, on a terminal
    return time_and_pick(run, variant=variant)


def check_variant(target: Target, variant: str) -> None:
    """A `--variant` the target can make, checked before any work."""
    names = ["float", *target.optimize.variants]
    if variant not in names:
        raise InputError(f"unknown --variant {variant!r}: target {target.name} makes {', '.join(names)}",
                         "pass one of those names, or drop --variant to let the target's policy pick")


def make_candidates(
    info: ModelInfo,
    target: Target,
    work_dir: Path,
    *,
    data_path: Path | None = None,
    log: Log = lambda _: None,
    gate: GateSettings | None = None,
    sample_shapes: SampleShapes | None = None,
    only: str | None = None,
) -> Run:
    """Check the data, write the float model, run the float passes, and make and gate every
    variant the target lists, in its order. Nothing is timed yet. With `only` (a pinned
    `--variant`), just that variant and those whose outcome it reads are made."""
    check_sample_shapes(sample_shapes or {}, info.signature, with_data=data_path is not None)
    model = onnx.load(str(info.path))  # with its external data, if any: saved external again below
    locales = make_portable(model)
    runtime = for_target(target)
    fit = runtime_fit(model, target)  # raises InputError when the pinned runtime cannot read it
    model.ir_version = fit.ir_version
    data, problem = None, ""
    if data_path:
        data = load_data(data_path, info.signature)
    else:
        try:
            data = synthetic_data(model, info.signature, shapes=sample_shapes)
        except InputError as exc:  # no data given and none can be made: ship float, say why
            problem = exc.message

    work_dir.mkdir(parents=True, exist_ok=True)
    float_path = save_model(model, work_dir / "float.onnx", external=bool(info.external_data))
    del model
    run = Run(info, target, work_dir, float_path, gate or GateSettings(), log, str(data_path or "no data"))
    run.max_ir_version = runtime.limits.max_ir_version
    run.float_recipe = _float_recipe(float_path, locales, fit.rewrite)
    if fit.rewrite:
        run.rewrites.append(fit.rewrite)
        run.note(f"The model's {fit.rewrite}; every variant carries the same IR version.")
    for node in locales:
        run.note(f"{node.op_type} node {node.node!r} asked for locale {node.locale}, which slim images and "
                 f"AWS Lambda lack: every variant has it set to {PORTABLE_LOCALE} (see docs/model-shapes.md).")
    for name in info.classes:
        run.note(f"Output {name!r} (one {{class: probability}} map per row) was compared as a probability "
                 f"table, one column per class in class order ({len(info.classes[name])} classes).")
    if data is not None:
        try:
            run.use_data(data)
        except Exception as exc:  # e.g. synthetic inputs of a size the model does not accept
            problem = f"the float model fails on {data.source}: {first_line(exc)}"
    if problem:
        run.problem = problem
        return run
    baseline = run.add("float", float_path, run.float_recipe)
    baseline.passed, baseline.reason = True, "the reference the others are compared with"

    run.quant_base = _float_passes(run, float_path)
    opt = target.optimize
    names = opt.variants if only is None else pinned_and_read(opt.variants, only)
    left_out = [name for name in opt.variants if name not in names]
    run.skipped.extend((name, f"not made: --variant {only} pins the pick") for name in left_out)
    if left_out:
        log(f"not made, --variant {only} pins the pick: {', '.join(left_out)}")
    run.make_variants([REGISTRY[name](opt.variant_config(name)) for name in names])
    return run



def time_and_pick(run: Run, *, budget_s: float | None = None, variant: str | None = None) -> OptimizationResult:
    """Time every candidate (references too) on the target's provider, and pick by its policy,
    or ship `variant` when it is pinned. `budget_s` defaults to TIMING_BUDGET_S."""
    target = run.target
    budget_s = TIMING_BUDGET_S if budget_s is None else budget_s
    if run.problem:
        if variant not in (None, "float"):
            raise InputError(f"--variant {variant} cannot ship: {run.problem}",
                             "drop --variant (float ships), or pass --calibration FILE.npz with real inputs")
        return _float_only(run)
    latency_note, measured_on = "", ""
    if run.on_target:
        measured_on = run.providers[0]
        _time_all(run, run.providers, budget_s)
    else:
        latency_note = f"not measured on target: {run.off_target}"
        run.note(f"Latency was not measured on the target: {run.off_target}. Accuracy was measured with the "
                 "CPU provider.")

    held = _hold_back(run)
    if variant is not None:
        chosen, why = pinned(run.candidates, variant, run.skipped)
    else:
        chosen, why = pick(run.candidates, target.optimize.policy, target.optimize.tolerance, run.on_target)
    _explain(run, chosen)
    return OptimizationResult(
        candidates=run.candidates, chosen=chosen, data_source=run.data_source, why=why,
        target=target.name, policy=target.optimize.policy, gate=run.gate,
        latency_note=latency_note, measured_on=measured_on, skipped=run.skipped,
        sensitive_layers=run.sensitive_layers, notes=run.notes, headline=_headline(run, chosen, held),
        gated_with=_gated_with(run), rewrites=run.rewrites, **_data_facts(run),
    )


def _gated_with(run: Run) -> str:
    """Where the gate ran, in words: the runtime the artifact ships, and the provider."""
    runtime = for_target(run.target)
    return f"{runtime} (the runtime the artifact ships, {runtime.where}) on {run.providers[0]}"


def _data_dependent(candidate: Candidate) -> bool:
    """Made by a variant whose accuracy depends on the data (int8 of any kind)."""
    variant = REGISTRY.get(candidate.name)
    return variant is not None and variant.data_dependent and not candidate.reference


def _hold_back(run: Run) -> list[Candidate]:
    """Without real data, the variants whose accuracy depends on it pass on no evidence: they are
    held back (never picked), unless the user allows it with --gate synthetic=allow."""
    if not run.data.synthetic or run.gate.synthetic == "allow":
        return []
    held = [c for c in run.candidates if c.passed and _data_dependent(c)]
    for c in held:
        c.held = HELD
    return held


def _headline(run: Run, chosen: Candidate, held: list[Candidate]) -> str:
    """The one line a console prints when the pick needs explaining, else ''."""
    if held:
        return (f"int8 held back: {', '.join(c.name for c in held)} {HELD} (no --calibration given); "
                f"{CALIBRATE} to gate int8 on them, or --gate synthetic=allow to ship it anyway")
    if run.data.synthetic and _data_dependent(chosen):
        return (f"{chosen.name} ships on synthetic evidence (--gate synthetic=allow): the gate never saw real "
                f"data; {CALIBRATE} to check it")
    listed = [name for name in run.target.optimize.variants]
    compared = [c for c in run.candidates if c.name in listed and not c.reason.startswith(COULD_NOT_RUN)]
    if listed and not compared:
        reasons = [f"{name}: {why}" for name, why in run.skipped if name in listed]
        reasons += [f"{c.name}: {c.reason}" for c in run.candidates if c.name in listed]
        return f"no variant could be made or compared with float: {'; '.join(reasons)}"
    return ""


def _data_facts(run: Run) -> dict:
    """What the report says about the data: real or synthetic, and how many rows did what."""
    ties = near_ties(run.reference, run.output_names, run.gate)
    return {"tolerance": run.target.optimize.tolerance, "synthetic": run.data.synthetic,
            "gate_rows": run.held_out.rows, "calibration_rows": run.calibration.rows,
            "near_ties": int(ties.sum()) if ties is not None else 0}


def _float_only(run: Run) -> OptimizationResult:
    path = run.float_path
    baseline = Candidate("float", path, model_bytes(path), run.float_recipe, reason="the reference")
    synthetic = run.data is None or run.data.synthetic
    if run.data is None:
        fix = CALIBRATE
    elif synthetic:
        fix = "pass --sample-shape INPUT=DIMS with a shape the model accepts, or --calibration FILE.npz"
    else:
        fix = "check that the calibration file holds inputs the model accepts"
    return OptimizationResult(
        candidates=[baseline], chosen=baseline, data_source=run.data.source if run.data else run.data_source,
        why="kept the float model: no variant was compared with it",
        target=run.target.name, policy=run.target.optimize.policy, gate=run.gate,
        tolerance=run.target.optimize.tolerance, synthetic=synthetic, problem=run.problem,
        headline=f"no variant was made: {run.problem}; {fix}",
        latency_note="not measured: nothing to compare", rewrites=run.rewrites, notes=[
            f"No variant was made: {run.problem}. To enable the optimizer's accuracy gate, {fix}."],
    )


# ---- steps --------------------------------------------------------------------------


def _float_recipe(float_path: Path, locales: list, rewrite: str = "") -> str:
    stored = ("weights external, in " + data_file(float_path).name) if stored_external(float_path) else "weights inline"
    changed = f"; locale of {', '.join(n.node for n in locales)} set to {PORTABLE_LOCALE}" if locales else ""
    if rewrite:
        changed += f"; {rewrite.split(':')[0]}"
    return f"the model as given, {stored}{changed}"


def runtime_fit(model: onnx.ModelProto, target: Target) -> Fit:
    """How the model fits the onnxruntime the target pins; InputError when it cannot be read there."""
    runtime = for_target(target)
    fit = runtime.fit(model)
    if not fit.fits:
        raise InputError(f"{target.name} ships {runtime}, which cannot read this model: {fit.problem}",
                         f"export the model for ONNX IR version {runtime.limits.max_ir_version} and opset "
                         f"{runtime.limits.max_opset} at most (e.g. an older onnx or exporter), or pick another target")
    return fit


def _float_passes(run: Run, float_path: Path) -> Path:
    """Run the float passes; returns the graph the quantizers start from."""
    opt = run.target.optimize
    base = float_path
    done = []
    if "prune" in opt.passes:
        try:
            base = passes.prune(float_path, run.work / "pruned.onnx")
            done.append("pruned (constant folding, dead nodes, unused and duplicate initializers)")
        except Exception as exc:
            run.skipped.append(("prune", f"the pass failed on this model: {first_line(exc)}"))
    if base == float_path:  # never touch the shipped float file: name nodes in a copy
        base = copy_model(float_path, run.work / "base.onnx")[0]
    lifted = _prepare_base(base)
    if lifted:
        run.note(f"{lifted} tensors held in Constant nodes (weights among them) were made initializers before "
                 "quantization, so that the int8 variants quantize those weights too.")
    final = base
    if "graph" in opt.passes:
        try:
            final = passes.graph_optimize(base, run.work / "float-optimized.onnx", opt.graph_level)
            done.append(f"onnxruntime graph optimizations at the portable '{opt.graph_level}' level, saved offline")
        except Exception as exc:
            run.skipped.append(("graph", f"the pass failed on this model: {first_line(exc)}"))
    if done:
        if final == base:  # prune only: keep the pruned file under the candidate's name
            final = copy_model(base, run.work / "float-optimized.onnx")[0]
        run.add("float-optimized", final, "; ".join(done))
    # Quantizers start from the pruned graph: they do not know onnxruntime's fused operators,
    # and onnxruntime applies the same fusions at load time on the target anyway.
    return base


def _prepare_base(path: Path) -> int:
    """Quantizers select nodes by name, and quantize initializer weights only: give every node a
    name, and lift weights held in Constant nodes into initializers. Returns how many were lifted."""
    model = onnx.load(str(path))
    seen = set()
    changed = False
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            changed = True
        seen.add(node.name)
    lifted = passes.lift_constants(model)
    if changed or lifted:
        save_model(model, path, external=stored_external(path))
    return lifted


def _time_all(run: Run, providers: list[str], budget_s: float) -> None:
    same = timed_as(run.candidates)
    sessions = {}
    for c in run.candidates:
        if c.name in same:
            run.log(f"{c.name}: not timed, it runs {same[c.name].name}'s graph once loaded (its latency is that one's)")
            continue
        try:
            sessions[c.name] = session(c.path, run.target, providers, as_recipe=c.reference)
        except Exception as exc:  # already failed the gate for the same reason; not timed
            run.log(f"{c.name}: not timed, it does not load ({first_line(exc)})")
    # Only batch sizes the model accepts: its fixed batch, if it has one. The larger batch holds at
    # most what the gate streams at once: every candidate's session keeps its activations for it.
    larger = min(run.target.optimize.latency_batch, run.held_out.stream_rows())
    batches = list(dict.fromkeys(timing_batches(sessions["float"], larger)))
    wanted = run.target.optimize.latency_batch
    if wanted not in batches and not fixed_batch(sessions["float"]):
        run.note(f"Latency was timed at batch {' and '.join(map(str, batches))}, not at the target's {wanted}: "
                 f"{larger} row(s) of these inputs are as much as the optimizer runs at once, which bounds the "
                 "build's memory (every candidate's session holds its activations for the batch it runs).")
    progress = run.progress or Progress(quiet=True)
    for batch in batches:
        run.log(f"timing {len(sessions)} candidates at batch {batch} on {providers[0]}")
        share = budget_s / len(batches)
        with progress.bar(f"timing at batch {batch}", total=share) as bar:
            started = time.perf_counter()
            timed = latencies(sessions, run.held_out, batch, budget_s=share,
                              on_round=lambda: bar.update(min(time.perf_counter() - started, share)))
        for name, lat in timed.items():
            run.find(name).latency[batch] = lat
    copy_latency(run.candidates, same)
    for name, other in same.items():
        run.note(f"{name} was not timed: once onnxruntime has loaded it, its session runs {other.name}'s own "
                 f"graph (checked when it was made), so its latency is {other.name}'s, measured in the same run.")


def _explain(run: Run, chosen: Candidate) -> None:
    if run.data.synthetic:
        shipped = (f" {chosen.name} ships on that evidence alone, as --gate synthetic=allow asked."
                   if _data_dependent(chosen) else
                   " So no variant whose accuracy depends on the data (int8, mixed) ships; --gate synthetic=allow "
                   "would let one.")
        run.notes.insert(0, "Accuracy was measured on synthetic inputs made from the model's signature, not on "
                            "real data: it shows the variant computes the same function, not how it does on "
                            "your data. Pass --calibration FILE.npz to gate on real inputs." + shipped)
    m = chosen.metrics
    if "accuracy" in m and chosen is not run.candidates[0]:
        within = m["accuracy_drop"] <= run.gate.max_accuracy_drop + 1e-12
        run.notes.insert(0, f"{chosen.name} keeps accuracy {m['accuracy']:.2%} against float's "
                            f"{m['float_accuracy']:.2%} on {run.held_out.rows} held-out labelled rows: "
                            f"{'within' if within else 'outside'} the gate's "
                            f"{run.gate.max_accuracy_drop * 100:.1f} points.")
    if run.calibration is not run.held_out:
        run.notes.append(f"Calibration used the first {run.calibration.describe()}; the gate used the other "
                         f"{run.held_out.rows}.")
    ties = near_ties(run.reference, run.output_names, run.gate)
    if ties is not None and ties.any():
        run.notes.append(f"{int(ties.sum())} of the gate's {run.held_out.rows} rows are near-ties in float (its top "
                         f"two classes within {run.gate.near_tie:.1%} of the row's range): they decide no top-1 "
                         f"agreement, which the other {run.held_out.rows - int(ties.sum())} rows decide.")
