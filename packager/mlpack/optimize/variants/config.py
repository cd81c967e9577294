"""A variant's typed settings. Kept apart from the variant interface (base.py) so that a
target, which holds them, names their type without depending on the optimizer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VariantConfig(BaseModel):
    """A variant's settings: its defaults, then the target's `[optimize.config.NAME]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Int8Config(VariantConfig):
    weight_type: Literal["qint8", "quint8"] = Field(
        "qint8", description="int8 weight type; by default the target's `optimize.weight_type`"
    )
