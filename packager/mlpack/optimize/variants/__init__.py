"""The optimizer's variants, by the name a target lists them under (docs/optimization.md).

Each module registers one `Variant`: its typed config, the variants it needs or reads
before it, when it applies, and how it makes its candidate. `order_problems` and
`config_problems` check a target file's `[optimize]` table against these declarations.
"""

from __future__ import annotations

from . import (  # noqa: F401 (they register)
    compact_int8, dynamic_int8, dynamic_int8_per_tensor, fp16, mixed_int8, pruned, smooth_int8, static_int8, stored_int8,
)
from .base import Int8Config, Outcome, Variant, VariantConfig
from .registry import REGISTRY, config_problems, order_problems, pinned_and_read, variant_config

__all__ = ["REGISTRY", "Int8Config", "Outcome", "Variant", "VariantConfig", "config_problems", "order_problems",
           "pinned_and_read", "variant_config"]
