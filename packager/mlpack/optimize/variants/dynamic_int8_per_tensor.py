"""dynamic-int8-per-tensor: as dynamic-int8, with one weight scale per weight tensor.

onnxruntime's own default (`quantize_dynamic(per_channel=False)`). Coarser than per channel,
so it fails the gate where channels differ in range (all-MiniLM-L6-v2's), but its kernels
skip the per-channel rescale: on a small model it is a few percent faster at equal
accuracy, and the pick should be free to take it.
"""

from __future__ import annotations

from .base import Outcome, VariantRun
from .dynamic_int8 import DynamicInt8
from .registry import register


@register
class DynamicInt8PerTensor(DynamicInt8):
    name = "dynamic-int8-per-tensor"

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import attention_fused, dynamic_int8

        start, weight = run.quant_base, self.config.weight_type

        def requantize(kept, dst):
            return dynamic_int8(start, dst, weight_type=weight, exclude=kept, per_channel=False)

        path = requantize((), run.work / f"{self.name}.onnx")
        candidate = run.add(self.name, path, f"weights {weight}, one scale per weight tensor, activations "
                                             "quantized at run time (convolutions float)" + attention_fused(path))
        return Outcome(candidate, float_graph=start, requantize=requantize)
