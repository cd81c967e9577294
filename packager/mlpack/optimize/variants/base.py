"""The variant interface: what each name in a target's `[optimize] variants` declares and does.

Variant modules import their recipes (onnx, onnxruntime) inside methods: target files are
validated against these declarations when they load, which must not load onnx.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import onnx

    from ..report import Candidate
    from ..run import Run
    from ..sensitivity import LayerError


class VariantConfig(BaseModel):
    """A variant's settings: its defaults, then the target's `[optimize.config.NAME]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Int8Config(VariantConfig):
    weight_type: Literal["qint8", "quint8"] = Field(
        "qint8", description="int8 weight type; by default the target's `optimize.weight_type`"
    )


Requantize = Callable[[Sequence[str], Path], Path]
"""An int8 recipe made again with the named nodes kept float: (nodes, destination) -> model."""


@dataclass
class Outcome:
    """What a variant made (or why it made nothing), and what it leaves for the variants after it."""

    candidate: Candidate | None = None
    skipped: str = ""  # why no candidate was made, for the report's "Not tried"
    float_graph: Path | None = None  # the float graph its int8 recipe quantized
    requantize: Requantize | None = None
    layers: list[LayerError] = field(default_factory=list)  # measured int8 error per layer, worst first

    @property
    def passed(self) -> bool:
        return self.candidate is not None and self.candidate.passed


class Variant(ABC):
    """One way to make a candidate from the float model.

    A subclass declares:
    - `name`: the key targets list it under;
    - `Config`: its settings, checked when a target file loads;
    - `needs_one_of`: variants of which at least one must be listed before it;
    - `reads`: the variants whose outcome it uses; any that is listed must come before it,
      and `Run.earlier` hands a variant only the outcomes it declares;
    - `not_applicable(model)`: why it cannot help a model, asked before it runs;
    - `data_dependent`: whether its accuracy depends on the data (int8 rounds activations to
      ranges that real inputs decide): such a variant never ships on a gate that ran on
      synthetic inputs, unless the user allows it (`--gate synthetic=allow`).
    """

    name: ClassVar[str]
    data_dependent: ClassVar[bool] = True
    Config: ClassVar[type[VariantConfig]] = VariantConfig
    needs_one_of: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    reads_because: ClassVar[str] = ""  # said when the order in a target file is wrong

    def __init__(self, config: VariantConfig) -> None:
        self.config = config

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        """Why this variant cannot help `model` (the float graph the quantizers start from), or None."""
        return None

    @abstractmethod
    def make(self, run: Run) -> Outcome:
        """Make and gate the candidate (`run.add`), or return `Outcome(skipped=...)`."""
