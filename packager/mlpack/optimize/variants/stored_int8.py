"""stored-int8: weights stored in int8 per output channel, widened to float when onnxruntime opens the model.

Layer weights have one scale per output channel, embedding tables (a Gather's table) one per row.

The file is about int8's size; the session runs float's graph at float's speed (onnxruntime
folds the widening once, at load; ../passes.py `stored_int8`). Where int8 kernels are slower
than float (small models, where a request's cost is overhead, and convolutions on CPUs without
fast int8 dot products) it is the way to a smaller artifact that loses no speed. Its only error
is the weights' rounding. When that fails the gate, the weights are ranked by their measured
effect on the output (each rounded alone, on a few calibration rows), and as few of the worst
as the gate allows stay float (mixed-int8's search, `fewest`); every weight float would be the
float model, which is never tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx

    from ..report import Candidate


def ranked_weights(run: VariantRun, weights: list[str], base: onnx.ModelProto) -> list[tuple[str, float]]:
    """`weights` with the relative output error of each stored in int8 alone, worst first
    (`base`: the float graph as read, so that each probe does not read it again)."""
    from ..passes import stored_int8
    from ..sensitivity import effect_rows, output_error
    from .mixed_int8 import _remove

    rows = effect_rows(run.calibration)
    reference = run.outputs(run.quant_base, rows)
    probe = run.work / "stored-int8-probe.onnx"
    errors = []
    for name in weights:
        made = stored_int8(run.quant_base, probe, only=[name], loaded=base)
        errors.append((name, output_error(reference, run.outputs(made, rows))))
    _remove(probe)
    return sorted(errors, key=lambda item: item[1], reverse=True)


def _checked(run: VariantRun, candidate: Candidate) -> Candidate:
    """The candidate, marked as running float's graph when its session, once loaded, does."""
    same = run.runs_float_graph(candidate.path) if candidate.passed else None
    if same:
        candidate.runs_as = "float"
    elif same is False:
        candidate.recipe += "; onnxruntime did not fold its widening at load, so it computes more than float"
    return candidate


@register
class StoredInt8(Variant):
    name = "stored-int8"
    # No activation is rounded, but int8's coarse weight steps are judged, like every int8, on
    # real inputs only (issue 20's rule: no int8 of any kind ships on synthetic rows by default).
    data_dependent = True

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        from ..passes import stored_int8_weights

        return None if stored_int8_weights(model) else \
            "no float32 MatMul, Gemm, Conv weights or embedding tables to store in int8"

    def make(self, run: VariantRun) -> Outcome:
        import onnx

        from ..passes import stored_int8, stored_int8_weights
        from .mixed_int8 import _remove, fewest

        weights = list(stored_int8_weights(onnx.load(str(run.quant_base), load_external_data=False)))
        how = ("stored in int8, one scale per output channel, widened to float32 when onnxruntime opens the "
               "model: float's arithmetic and speed")
        whole = run.gated(self.name, stored_int8(run.quant_base, run.work / f"{self.name}.onnx"),
                          f"{len(weights)} weight tensors {how}")
        if whole.passed or len(weights) == 1:
            return Outcome(run.keep(_checked(run, whole)))
        base = onnx.load(str(run.quant_base))  # read once for every model the search makes
        ranked = ranked_weights(run, weights, base)
        run.log(f"{self.name}: every weight in int8 fails the gate ({whole.reason}); keeping the worst float")
        _remove(whole.path)
        tried: dict[int, Candidate] = {}

        def passes(keep: int) -> bool:
            path = stored_int8(run.quant_base, run.work / f"{self.name}-{keep}.onnx",
                               keep=[name for name, _ in ranked[:keep]], loaded=base)
            tried[keep] = candidate = run.gated(self.name, path)
            run.log(f"{self.name} with {keep} of {len(ranked)} weights float: gate "
                    f"{'pass' if candidate.passed else 'FAIL'}")
            return candidate.passed

        passed = fewest(passes, 0, len(ranked))
        for count, candidate in tried.items():
            if count != passed:
                _remove(candidate.path)
        if passed is None:
            return Outcome(skipped=f"the gate failed with every weight but one float ({whole.reason} with none)")
        kept = ", ".join(f"{name} ({error:.3f})" for name, error in ranked[:passed][:4])
        recipe = (f"{len(weights) - passed} of {len(weights)} weight tensors {how}; the {passed} whose rounding "
                  f"alone moved the output most kept float (relative error): {kept}{', ...' if passed > 4 else ''}")
        tried[passed].recipe = recipe
        return Outcome(run.keep(_checked(run, tried[passed])))
