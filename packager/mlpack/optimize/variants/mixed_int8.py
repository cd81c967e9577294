"""mixed-int8: an earlier int8 recipe with the nodes whose int8 rounding hurts the output most kept float.

Only when no int8 variant passes the gate as is. The nodes the recipe quantized (weight
layers, and in QDQ also the Add, Concat, Resize... whose inputs it rounds) are ranked by
their measured effect on the model's output (../sensitivity.py). Then as few as the gate
allows stay float: the worst one, two, four... until the gate passes, then a bisection
between the last count that failed and the first that passed finds the fewest. The search
gates on a quarter of the gate's rows, and the count it finds on all of them (`fewest`,
SCREEN_SHARE); the recipe's calibrated ranges are reused by every count it tries. Every
quantized node kept float is the float graph itself (`quantized_nodes` makes sure the recipe
quantizes nothing then), so when only that passes, that is the float model and nothing is
added.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .base import Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx

    from ..report import Candidate


NO_LAYERS = "no MatMul, Gemm or Conv layers with constant weights"
# The search looks at a quarter of the gate's rows (when that is at least MIN_SCREEN_ROWS):
# each count it tries costs a model and a run, and most counts fail. The count it settles on
# is gated on every row; if that fails, the search goes on from there, every row gated.
SCREEN_SHARE, MIN_SCREEN_ROWS = 4, 8


@register
class MixedInt8(Variant):
    name = "mixed-int8"
    # The recipes it can start from, in the order it prefers them: static for convolutional
    # models (static-int8 runs only on those), else smoothed, else dynamic.
    needs_one_of = ("static-int8", "smooth-int8", "dynamic-int8")
    reads = (*needs_one_of, "compact-int8")
    reads_because = "mixed-int8 keeps layers of an earlier int8 variant in float, and only when none passes"

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        from ..sensitivity import weight_layers

        return None if weight_layers(model) else NO_LAYERS

    def make(self, run: VariantRun) -> Outcome:
        import onnx

        from ..sensitivity import measure_effects, quantized_nodes

        earlier = {name: run.earlier(name) for name in self.reads}
        passing = [name for name, outcome in earlier.items() if outcome and outcome.passed]
        if passing:
            return Outcome(skipped=f"{passing[0]} passes the gate as is; no layer needs to stay float")
        recipe = next((name for name in self.needs_one_of
                       if earlier[name] and earlier[name].requantize and earlier[name].candidate), None)
        if recipe is None:
            return Outcome(skipped=f"needs an int8 variant to start from, and none of "
                                   f"{', '.join(self.needs_one_of)} was made")
        source = earlier[recipe]
        units = quantized_nodes(onnx.load(str(source.float_graph), load_external_data=False),
                                onnx.load(str(source.candidate.path), load_external_data=False))
        if not units:
            return Outcome(skipped=f"{recipe} quantized no node of this model")
        layers = measure_effects(source.float_graph, units, run, run.calibration)
        ranked = [e.node for e in layers] + [u for u in units if u not in {e.node for e in layers}]
        made: dict[int, Path] = {}
        tried: dict[int, Candidate] = {}

        def model(keep: int) -> Path:
            if keep not in made:
                made[keep] = source.requantize(ranked[:keep], run.work / f"mixed-int8-{keep}.onnx")
            return made[keep]

        def gated(keep: int) -> bool:
            tried[keep] = candidate = run.gated(self.name, model(keep))
            run.log(f"mixed-int8 ({recipe}) with {keep} of {len(ranked)} quantized nodes in float: gate "
                    f"{'pass' if candidate.passed else 'FAIL'}")
            return candidate.passed

        rows = run.held_out.rows // SCREEN_SHARE
        passed, screened_on = None, ""
        if rows >= MIN_SCREEN_ROWS:
            def screened(keep: int) -> bool:
                ok = run.screen(model(keep), rows)
                run.log(f"mixed-int8 ({recipe}) with {keep} of {len(ranked)} quantized nodes in float: "
                        f"{'pass' if ok else 'FAIL'} on {rows} of {run.held_out.rows} gate rows")
                return ok

            guess = fewest(screened, 0, len(ranked))
            screened_on = "" if guess is not None else f" (on {rows} of the {run.held_out.rows} gate rows)"
            passed = guess if guess is not None and gated(guess) else None
            if guess is not None and passed is None:  # the screen was too kind: on from there, every row gated
                passed = fewest(gated, guess, len(ranked))
        else:
            passed = fewest(gated, 0, len(ranked))
        for count, path in made.items():
            if count != passed:
                _remove(path)
        if passed is None:
            return Outcome(skipped=f"the gate failed{screened_on} until all {len(ranked)} nodes {recipe} quantized "
                                   "were float, which is the float model", layers=layers)
        candidate, kept = tried[passed], ranked[:passed]
        candidate.recipe = (f"as {recipe}, but the {passed} of its {len(ranked)} quantized nodes with the largest "
                            f"measured effect on the output kept float: {', '.join(kept[:4])}"
                            f"{', ...' if passed > 4 else ''}")
        return Outcome(run.keep(candidate), layers=layers)


def fewest(passes: Callable[[int], bool], failed: int, total: int) -> int | None:
    """The fewest count above `failed` (known to fail) and below `total` for which `passes`:
    counts double from there until one passes (2x `failed`, or 1, at most `total` - 1), then bisection
    between the last that failed and the first that passed. None: none below `total` passes
    (`total` itself, every node float, is the float graph: never tried)."""
    keep, passed = min(total - 1, max(failed * 2, failed + 1)), None
    while failed < keep < total:
        if passes(keep):
            passed = keep
            break
        if keep == total - 1:
            break
        failed, keep = keep, min(total - 1, keep * 2)
    while passed is not None and passed - failed > 1:
        middle = (failed + passed) // 2
        if passes(middle):
            passed = middle
        else:
            failed = middle
    return passed


def _remove(path: Path) -> None:
    from ...model.files import model_paths

    for file in model_paths(path):
        file.unlink(missing_ok=True)
