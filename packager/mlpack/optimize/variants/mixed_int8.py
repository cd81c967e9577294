"""mixed-int8: an earlier int8 recipe with the layers whose int8 error is largest kept in float.

Only when no int8 variant passes the gate as is. The error is measured per layer
(../sensitivity.py), and as few layers as the gate allows stay float: the worst one, then
two, four, and so on. When the gate passes only with every layer float, that is the float
model, and nothing is added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Outcome, Variant
from .registry import register

if TYPE_CHECKING:
    import onnx

    from ..run import Run

NO_LAYERS = "no MatMul, Gemm or Conv layers with constant weights"


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

    def make(self, run: Run) -> Outcome:
        from ..sensitivity import measure_layers

        earlier = {name: run.earlier(name) for name in self.reads}
        recipe = next((name for name in self.needs_one_of if earlier[name] and earlier[name].requantize), None)
        if recipe is None:
            return Outcome(skipped=f"needs an int8 variant to start from, and none of "
                                   f"{', '.join(self.needs_one_of)} was made")
        source = earlier[recipe]
        layers = measure_layers(source.float_graph, run.calibration)
        passing = [name for name, outcome in earlier.items() if outcome and outcome.passed]
        if passing:
            return Outcome(skipped=f"{passing[0]} passes the gate as is; no layer needs to stay float", layers=layers)
        if not layers:
            return Outcome(skipped=NO_LAYERS)
        keep = 1
        while True:
            kept = [e.node for e in layers[:keep]]
            path = source.requantize(kept, run.work / "mixed-int8.onnx")
            candidate = run.gated(self.name, path)
            run.log(f"mixed-int8 ({recipe}) with {keep} of {len(layers)} layers in float: gate "
                    f"{'pass' if candidate.passed else 'FAIL'}")
            if candidate.passed or keep >= len(layers):
                break
            keep = min(len(layers), keep * 2)
        if keep >= len(layers):
            path.unlink()
            return Outcome(skipped=f"the gate failed until all {len(layers)} layers were float, which is the "
                                   "float model", layers=layers)
        candidate.recipe = (f"as {recipe}, but the {keep} layer(s) of {len(layers)} with the largest measured "
                            f"int8 error kept float: {', '.join(kept[:4])}{', ...' if keep > 4 else ''}")
        return Outcome(run.keep(candidate), layers=layers)
