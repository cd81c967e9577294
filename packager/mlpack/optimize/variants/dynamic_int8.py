"""dynamic-int8: weights int8 per output channel, activations quantized at run time (no calibration).

Convolutions stay float (passes.DYNAMIC_INT8_OPS), so a model of convolutions only has
nothing for it: static-int8 quantizes convolutions, with ranges calibrated on data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Int8Config, Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx

# Layers with constant weights it is tried for: those of passes.DYNAMIC_INT8_OPS, and Gemm.
WEIGHTED = ("MatMul", "Gemm", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")


@register
class DynamicInt8(Variant):
    name = "dynamic-int8"
    Config = Int8Config
    config: Int8Config

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        weights = {t.name for t in model.graph.initializer}
        if any(n.op_type in WEIGHTED and set(n.input) & weights for n in model.graph.node):
            return None
        return ("no MatMul, Gemm or Gather layer with constant weights; convolutions stay float in dynamic int8 "
                "(onnxruntime's ConvInteger is slower than float), static-int8 quantizes them")

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import attention_fused, dynamic_int8

        start, weight = run.quant_base, self.config.weight_type

        def requantize(kept, dst):
            return dynamic_int8(start, dst, weight_type=weight, exclude=kept)

        path = requantize((), run.work / "dynamic-int8.onnx")
        candidate = run.add(self.name, path, f"weights {weight} per channel, activations quantized at run time "
                                             "(convolutions float)" + attention_fused(path))
        return Outcome(candidate, float_graph=start, requantize=requantize)
