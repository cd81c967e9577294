"""smooth-int8: activation smoothing (SmoothQuant-style), then dynamic-int8.

The smoothing is ../smooth.py. The strength is chosen by quantizing at each strength of
the config's grid and comparing with float on the calibration rows, never on the gate's
rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from .base import Int8Config, Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx


class SmoothInt8Config(Int8Config):
    strengths: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = Field(
        (0.5, 0.65, 0.8), min_length=1,
        description="smoothing strengths tried (share of the range moved into the weights); the best on "
                    "the calibration rows is kept",
    )


@register
class SmoothInt8(Variant):
    name = "smooth-int8"
    Config = SmoothInt8Config
    config: SmoothInt8Config

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        from ..smooth import activation_groups

        return None if activation_groups(model) else "no MatMul reads an activation with constant weights"

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import dynamic_int8

        weight = self.config.weight_type
        path, smoothed, recipe = smooth_quantize(run, run.quant_base, self.config.strengths, weight, self.name)
        candidate = run.add(self.name, path, recipe)

        def requantize(kept, dst):
            return dynamic_int8(smoothed, dst, weight_type=weight, exclude=kept)

        return Outcome(candidate, float_graph=smoothed, requantize=requantize)


def smooth_quantize(run: VariantRun, base: Path, strengths: tuple[float, ...], weight: str,
                    stem: str) -> tuple[Path, Path, str]:
    """Smooth `base` at each strength, quantize it as dynamic-int8, and keep the strength whose
    outputs are closest to `base`'s on the calibration rows. Returns (int8 model, smoothed float
    graph, the recipe in words); the other strengths' files are removed."""
    from .. import smooth
    from ..passes import dynamic_int8

    calibration_reference = run.outputs(base, run.calibration)
    trials = []
    for strength in strengths:
        plan = smooth.plan(base, run.calibration, strength)
        smoothed = smooth.apply(base, run.work / f"{stem}-smoothed-{strength}.onnx", plan)
        path = dynamic_int8(smoothed, run.work / f"{stem}-{strength}.onnx", weight_type=weight)
        quality = run.compare(calibration_reference, run.outputs(path, run.calibration)).quality
        run.log(f"{stem} at strength {strength}: quality {quality:.4f} on {run.calibration.describe()}")
        trials.append((quality, strength, smoothed, path, len(plan)))
    quality, strength, smoothed, path, tensors = max(trials, key=lambda t: t[0])
    for _, _, other_smoothed, other_path, _ in trials:
        if other_path != path:
            other_smoothed.unlink()
            other_path.unlink()
    return path, smoothed, (
        f"as dynamic-int8, after moving activation range into the weights on {tensors} tensors "
        f"(SmoothQuant-style, strength {strength} chosen from {', '.join(map(str, strengths))} "
        f"on {run.calibration.describe()})")
