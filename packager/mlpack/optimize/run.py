"""One optimization's shared state: the data split, float's reference outputs, the candidates
made so far, what each variant left for the ones after it, and the report's notes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ..errors import MlpackError
from ..model.files import model_bytes
from ..pinned_runtime import for_target, runtime_message
from ..model.info import ModelInfo
from ..progress import Progress
from ..targets import Target
from .data import EvalData
from .gate import GateSettings, Verdict, compare
from .measure import fixed_batch, graph_at_load, outputs, session, target_providers
from .report import Candidate
from .variants import Outcome, Variant

Log = Callable[[str], None]


# Where onnxruntime's messages name its C++ source: noise to a user, and it cuts the reason off.
_SOURCE_NOISE = re.compile(r"\S*onnxruntime_src/\S+:\d+\s+|(?:\b\w+\s+)?onnxruntime::[\w:]+\([^)]*\)\s*")


def first_line(exc: BaseException) -> str:
    """An exception's whole message on one line, without onnxruntime's source locations."""
    text = _SOURCE_NOISE.sub("", str(exc)).strip() or type(exc).__name__
    return " ".join(text.split())


class Run:
    """Made by `pipeline.make_candidates`; variants read and add to it while they run."""

    def __init__(self, info: ModelInfo, target: Target, work: Path, float_path: Path, gate: GateSettings,
                 log: Log, data_source: str) -> None:
        self.info, self.target, self.work, self.gate, self.log = info, target, work, gate, log
        self.float_path = float_path
        self.quant_base = float_path  # the float graph the quantizers start from (after the float passes)
        self.float_recipe = "the model as given"  # how float.onnx was stored and changed, in words
        self.data_source = data_source
        self.problem = ""  # why no variant can be checked against float; then float ships alone
        self.data: EvalData | None = None
        self.candidates: list[Candidate] = []
        self.skipped: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.outcomes: dict[str, Outcome] = {}
        self.fixed_batch: int | None = None  # the batch size the model's inputs fix, if any
        self.output_names: list[str] = []
        self.reference: list[np.ndarray] = []
        # Where candidates are gated and timed: the target's providers when they really load
        # here (then `on_target`), else the CPU; always in the onnxruntime the target pins.
        self.providers: list[str] = ["CPUExecutionProvider"]
        self.on_target = False
        self.off_target = ""  # why the target's providers are not used here, when they are not
        self.max_ir_version: int | None = None  # what the pinned runtime reads; candidates are fitted to it
        self.rewrites: list[str] = []  # what was changed in the model for that runtime, in words
        self._running: Variant | None = None
        self.progress: Progress | None = None  # where timing draws its bars (a terminal), if anywhere

    def use_data(self, data: EvalData) -> None:
        """Split the data and run float on the gate's rows: the reference every candidate is compared with.
        Raises when float's outputs cannot be read (e.g. ZipMap's lists of dicts)."""
        self.data = data
        self.calibration, self.held_out = data.split()
        providers, self.off_target = target_providers(self.target, self.float_path)
        if providers is not None:
            self.providers, self.on_target = providers, True
        float_session = session(self.float_path, self.target, self.providers)
        self.fixed_batch = fixed_batch(float_session)
        self.output_names = [o.name for o in float_session.get_outputs()]
        self.reference = outputs(float_session, self.held_out)
        self.data_source = data.source

    # ---- what variants use -----------------------------------------------------------

    def outputs(self, path: Path, data: EvalData, as_recipe: bool = False) -> list[np.ndarray]:
        """A model's outputs on `data`, from a session made as the target serves, in its pinned
        onnxruntime, on the target's provider when it is here, else the CPU (`as_recipe`:
        measure.session)."""
        return outputs(session(path, self.target, self.providers, as_recipe=as_recipe), data)

    def compare(self, reference: list[np.ndarray], got: list[np.ndarray], labels: np.ndarray | None = None) -> Verdict:
        return compare(reference, got, self.output_names, self.gate, labels)

    def gated(self, name: str, path: Path, recipe: str = "", as_recipe: bool = False) -> Candidate:
        """A candidate for `path`, gated against float on the held-out rows; not kept yet."""
        problem = fit_ir_version(path, self.max_ir_version)
        candidate = Candidate(name, path, model_bytes(path), recipe)  # external data counted in
        if problem:
            candidate.passed, candidate.reason = False, f"the runtime the target ships cannot read it: {problem}"
            return candidate
        try:
            got = self.outputs(path, self.held_out, as_recipe)
        except Exception as exc:  # e.g. an operator the pinned onnxruntime lacks a kernel for
            candidate.passed = False
            candidate.reason = (f"could not run in {for_target(self.target)} on {self.providers[0]}, so accuracy "
                                f"is unmeasured ({runtime_message(exc)})")
            return candidate
        verdict = self.compare(self.reference, got, self.held_out.labels)
        candidate.passed, candidate.reason = verdict.passed, verdict.reason
        candidate.metrics, candidate.quality = verdict.metrics, verdict.quality
        return candidate

    def screen(self, path: Path, rows: int) -> bool:
        """Whether `path` passes the gate on the first `rows` held-out rows only: a cheap first
        look for searches that try many models (mixed-int8); what ships is gated on every row."""
        part = self.held_out.take(slice(0, rows))
        try:
            got = self.outputs(path, part)
        except Exception:  # gated() says why in full when the model is gated
            return False
        return self.compare([r[:rows] for r in self.reference], got, part.labels).passed

    def keep(self, candidate: Candidate) -> Candidate:
        self.candidates.append(candidate)
        self.log(f"{candidate.name}: {candidate.size_bytes:,} bytes, gate {'pass' if candidate.passed else 'FAIL'}"
                 + ("" if candidate.passed else f" ({candidate.reason})"))
        return candidate

    def add(self, name: str, path: Path, recipe: str) -> Candidate:
        return self.keep(self.gated(name, path, recipe))

    def runs_float_graph(self, path: Path) -> bool | None:
        """Whether a session of `path` runs the float graph the variants start from once loaded
        (measure.graph_at_load): float's, after float passes that only take work away (the prune
        pass: dead nodes, folded constants), so no slower than float. Checked in the onnxruntime the
        target pins when that is this process's, at the basic level, which every level the target
        may set includes but 'disable' (then nothing is folded: False); else None, unknown."""
        if self.target.runtime.graph_optimization_level == "disable":
            return False
        if not for_target(self.target).local:
            return None
        return graph_at_load(path, self.work) == graph_at_load(self.quant_base, self.work)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def earlier(self, name: str) -> Outcome | None:
        """The outcome of variant `name` (None when it was not listed before the running variant,
        which must declare `name` in its `reads`)."""
        running = self._running
        if running is None or name not in running.reads:
            raise LookupError(f"{running.name if running else 'no variant'} reads {name}'s outcome "
                              "without declaring it in `reads`")
        return self.outcomes.get(name)

    # ---- what the pipeline uses ----------------------------------------------------------

    def make_variants(self, variants: Sequence[Variant]) -> None:
        """Run each variant in order; one that does not apply, or whose recipe breaks on this
        model, is skipped with the reason, never fatal."""
        base = onnx.load(str(self.quant_base))
        for variant in variants:
            self._running = variant
            try:
                reason = variant.not_applicable(base)
                outcome = Outcome(skipped=reason) if reason else variant.make(self)
            except Exception as exc:
                outcome = Outcome(skipped=f"the recipe failed on this model: {first_line(exc)}")
            finally:
                self._running = None
            self.outcomes[variant.name] = outcome
            if outcome.skipped:
                self.skipped.append((variant.name, outcome.skipped))
                self.log(f"{variant.name}: skipped, {outcome.skipped}")

    def add_reference(self, name: str, path: Path, recipe: str) -> Candidate:
        """Gate a model made elsewhere beside the candidates: timed with them, never picked (benchmarks);
        gated and timed in a session as its recipe's user opens it (measure.session's `as_recipe`)."""
        if self.problem:
            raise MlpackError(f"cannot compare {name} with float: {self.problem}")
        candidate = self.keep(self.gated(name, path, recipe, as_recipe=True))
        candidate.reference = True
        return candidate

    def find(self, name: str) -> Candidate | None:
        return next((c for c in self.candidates if c.name == name), None)

    @property
    def sensitive_layers(self) -> list[tuple[str, float]]:
        """The measured int8 error per layer, worst first, from the variant that measured it."""
        layers = next((o.layers for o in self.outcomes.values() if o.layers), [])
        return [(e.node, e.relative_error) for e in layers]


def fit_ir_version(path: Path, max_ir_version: int | None) -> str:
    """Lower a candidate's ONNX IR version in place to what the pinned runtime reads, when that is
    safe (quantizers may write their own onnx's IR version); '' when it fits, else why it cannot."""
    if max_ir_version is None:
        return ""
    from ..pinned_runtime.compat import min_ir_version

    model = onnx.load(str(path), load_external_data=False)  # the header only: weights stay where they are
    if model.ir_version <= max_ir_version:
        return ""
    needed, why = min_ir_version(model)
    if needed > max_ir_version:
        return f"it is ONNX IR version {model.ir_version} and needs {needed} ({why})"
    model.ir_version = max_ir_version
    onnx.save_model(model, str(path))
    return ""
