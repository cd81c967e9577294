"""fp16: weights and arithmetic in float16, float32 inputs and outputs (for GPUs)."""

from __future__ import annotations

from .base import Outcome, Variant, VariantRun
from .registry import register


@register
class Fp16(Variant):
    name = "fp16"
    data_dependent = False  # float16 rounds every value alike: no range is fitted to the data

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import fp16

        path = fp16(run.quant_base, run.work / "fp16.onnx")
        return Outcome(run.add(self.name, path, "weights and arithmetic in float16, float32 inputs and outputs"))
