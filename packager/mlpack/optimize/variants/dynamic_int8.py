"""dynamic-int8: weights int8 per output channel, activations quantized at run time (no calibration)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Int8Config, Outcome, Variant
from .registry import register

if TYPE_CHECKING:
    from ..run import Run


@register
class DynamicInt8(Variant):
    name = "dynamic-int8"
    Config = Int8Config
    config: Int8Config

    def make(self, run: Run) -> Outcome:
        from ..passes import dynamic_int8

        start, weight = run.quant_base, self.config.weight_type

        def requantize(kept, dst):
            return dynamic_int8(start, dst, weight_type=weight, exclude=kept)

        path = requantize((), run.work / "dynamic-int8.onnx")
        candidate = run.add(self.name, path, f"weights {weight} per channel, activations quantized at run time")
        return Outcome(candidate, float_graph=start, requantize=requantize)
