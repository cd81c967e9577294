"""static-int8: QDQ int8 with activation ranges calibrated on data, for convolutional models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Int8Config, Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx


CONVOLUTIONS = ("Conv", "ConvTranspose")


@register
class StaticInt8(Variant):
    name = "static-int8"
    Config = Int8Config
    config: Int8Config

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        if any(n.op_type in CONVOLUTIONS for n in model.graph.node):
            return None
        return "no convolutions: static QDQ is how convolutions get int8 (dynamic int8 would run them as " \
               "ConvInteger), and dynamic-int8 covers MatMul layers without calibration"

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import static_int8

        if run.calibration.synthetic:
            run.note("static-int8 was calibrated on synthetic inputs; real data (--calibration) gives "
                     "activation ranges that fit real requests")
        start, weight, calibration = run.quant_base, self.config.weight_type, run.calibration

        ranges = run.work / "static-int8-ranges.json"  # calibrated once, read back by mixed-int8's trials
        ranges.unlink(missing_ok=True)

        def requantize(kept, dst):
            return static_int8(start, dst, calibration, weight_type=weight, exclude=kept,
                               fixed_batch=run.fixed_batch, ranges=ranges)

        path = requantize((), run.work / "static-int8.onnx")
        candidate = run.add(self.name, path, f"QDQ int8 ({weight} weights per channel), activation ranges "
                                             f"calibrated on {calibration.describe()}")
        return Outcome(candidate, float_graph=start, requantize=requantize)
