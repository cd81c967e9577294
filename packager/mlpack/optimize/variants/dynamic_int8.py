"""dynamic-int8: weights int8 per output channel, activations quantized at run time (no calibration)."""

from __future__ import annotations

from .base import Int8Config, Outcome, Variant, VariantRun
from .registry import register


@register
class DynamicInt8(Variant):
    name = "dynamic-int8"
    Config = Int8Config
    config: Int8Config

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import dynamic_int8

        start, weight = run.quant_base, self.config.weight_type

        def requantize(kept, dst):
            return dynamic_int8(start, dst, weight_type=weight, exclude=kept)

        path = requantize((), run.work / "dynamic-int8.onnx")
        candidate = run.add(self.name, path, f"weights {weight} per channel, activations quantized at run time")
        return Outcome(candidate, float_graph=start, requantize=requantize)
