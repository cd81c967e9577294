"""The variant interface: what each name in a target's `[optimize] variants` declares and does.

Variant modules import their recipes (onnx, onnxruntime) inside methods: target files are
validated against these declarations when they load, which must not load onnx.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence

from .config import Int8Config, VariantConfig

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from ..data import EvalData
    from ..gate import Verdict
    from ..report import Candidate
    from ..sensitivity import LayerError

__all__ = ["Int8Config", "Outcome", "Requantize", "Variant", "VariantConfig", "VariantRun"]


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
    chosen: dict[str, Any] = field(default_factory=dict)  # what it settled on (pruned's ratio), for readers

    @property
    def passed(self) -> bool:
        return self.candidate is not None and self.candidate.passed


class VariantRun(Protocol):
    """What a variant may read and call of the optimization it runs in (`optimize/run.py`'s
    `Run`, which imports the variants: they see it only through this)."""

    work: Path  # scratch space for the models it makes
    quant_base: Path  # the float graph the quantizers start from (after the float passes)
    calibration: EvalData  # the rows int8 recipes calibrate on (never the gate's)
    fixed_batch: int | None  # the batch size the model's inputs fix, if any
    log: Callable[[str], None]

    def outputs(self, path: Path, data: EvalData) -> list[np.ndarray]: ...

    def compare(self, reference: list[np.ndarray], got: list[np.ndarray],
                labels: np.ndarray | None = None) -> Verdict: ...

    def gated(self, name: str, path: Path, recipe: str = "") -> Candidate: ...

    def keep(self, candidate: Candidate) -> Candidate: ...

    def add(self, name: str, path: Path, recipe: str) -> Candidate: ...

    def runs_float_graph(self, path: Path) -> bool | None: ...

    def note(self, text: str) -> None: ...

    def earlier(self, name: str) -> Outcome | None: ...


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
    def make(self, run: VariantRun) -> Outcome:
        """Make and gate the candidate (`run.add`), or return `Outcome(skipped=...)`."""
