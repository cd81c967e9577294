"""compact-int8: embedding tables in 4 bits (GatherBlockQuantized), the other weights int8.

A table lookup costs no arithmetic, so 4 bits there cost accuracy only where the gate can
see it. The other weights are quantized as smooth-int8 did when it ran and passed, else as
dynamic-int8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .base import Int8Config, Outcome, Variant, VariantRun
from .registry import register

if TYPE_CHECKING:
    import onnx


class CompactInt8Config(Int8Config):
    block_size: Literal[16, 32, 64, 128, 256] = Field(32, description="4-bit table values that share one scale")


@register
class CompactInt8(Variant):
    name = "compact-int8"
    Config = CompactInt8Config
    config: CompactInt8Config
    reads = ("smooth-int8",)
    reads_because = "compact-int8 starts from smooth-int8's smoothed graph when that passed the gate"

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        from ..passes import embedding_tables

        return None if embedding_tables(model) else "no large embedding tables to store in 4 bits"

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import dynamic_int8, int4_tables

        smooth = run.earlier("smooth-int8")
        smoothed = smooth.float_graph if smooth and smooth.passed else None
        tables = int4_tables(smoothed or run.quant_base, run.work / "int4-tables.onnx",
                             block_size=self.config.block_size)
        weight = self.config.weight_type
        path = dynamic_int8(tables, run.work / "compact-int8.onnx", weight_type=weight)
        tables.unlink()
        candidate = run.add(self.name, path, f"embedding tables in 4 bits (blocks of {self.config.block_size}), "
                                             f"other weights as {'smooth-int8' if smoothed else 'dynamic-int8'}")
        return Outcome(candidate)
