"""pruned: whole feed-forward channels and conv filters removed, the next layer refit on calibration data.

The pruning is ../structured.py. The ratios of the config are tried smallest first, up to
the first that fails the gate (more pruning only adds error, and on a model whose channels
all matter this costs one pruning, not all); the largest that passed is the candidate, so
the variant never ships a pruning that failed. `pruned-int8` quantizes that smaller graph
with smooth-int8's recipe, from the ratio `pruned` kept down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from .base import Outcome, Variant, VariantConfig, VariantRun
from .registry import register
from .smooth_int8 import SmoothInt8Config

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable, Iterable

    import onnx

    from ..report import Candidate
    from ..structured import Pruned, Pruner


class PrunedConfig(VariantConfig):
    ratios: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = Field(
        (0.0625, 0.125, 0.25, 0.5), min_length=1,
        description="shares of each block's channels removed, tried smallest first up to the first that "
                    "fails the gate; the largest that passes is kept",
    )
    multiple: int = Field(8, ge=1, description="kept channels are rounded up to a multiple of this (SIMD widths)")


class PrunedInt8Config(PrunedConfig, SmoothInt8Config):
    pass


NO_BLOCKS = ("no MatMul -> channel-wise ops -> MatMul or Conv -> channel-wise ops -> Conv chain whose channels "
             "can be removed")


def _not_applicable(model: onnx.ModelProto) -> str | None:
    from ..structured import find_blocks

    return None if find_blocks(model) else NO_BLOCKS


def _removing(pruner: Pruner, ratios: Iterable[float]) -> list[float]:
    """Those of `ratios` that remove at least one channel somewhere."""
    return [ratio for ratio in ratios if pruner.removes_any(ratio)]


def _removes_nothing(pruner: Pruner, config: PrunedConfig) -> str:
    widths = ", ".join(str(w) for w in sorted({b.channels for b in pruner.blocks}))
    return (f"no ratio of {', '.join(f'{r:g}' for r in config.ratios)} removes a channel: kept channels round up "
            f"to a multiple of {config.multiple} and the blocks have {widths}")


def _recipe(pruned: Pruned, run: VariantRun) -> str:
    return (f"{pruned.ratio:.1%} of each block's channels removed: {pruned.describe()}; chosen by their "
            f"least-squares loss and the next layer refit on {run.calibration.describe()}")


def _first_passing(run: VariantRun, name: str, ratios: list[float], make: Callable[[float], tuple[Path, str]]
                   ) -> tuple[Candidate | None, float | None, str]:
    """Gate `make(ratio)` at each ratio, largest first, until one passes; the failed files are
    removed. Returns (candidate, its ratio, what failed, in words)."""
    from .mixed_int8 import _remove

    failed = []
    for ratio in ratios:
        path, recipe = make(ratio)
        candidate = run.gated(name, path, recipe)
        run.log(f"{name} at ratio {ratio}: gate {'pass' if candidate.passed else 'FAIL'}"
                + ("" if candidate.passed else f" ({candidate.reason})"))
        if candidate.passed:
            return candidate, ratio, "; ".join(failed)
        failed.append(f"{ratio}: {candidate.reason}")
        _remove(path)
    return None, None, "; ".join(failed)


def _largest_passing(run: VariantRun, name: str, ratios: list[float], make: Callable[[float], tuple[Path, str]]
                     ) -> tuple[Candidate | None, float | None, str]:
    """Gate `make(ratio)` at each ratio, smallest first, until one fails; every file but the
    largest that passed is removed. Returns (candidate, its ratio, what failed, in words)."""
    from .mixed_int8 import _remove

    best: tuple[Candidate, float] | None = None
    for ratio in sorted(ratios):
        path, recipe = make(ratio)
        candidate = run.gated(name, path, recipe)
        run.log(f"{name} at ratio {ratio}: gate {'pass' if candidate.passed else 'FAIL'}"
                + ("" if candidate.passed else f" ({candidate.reason})"))
        if not candidate.passed:
            _remove(path)
            return (*best, f"{ratio}: {candidate.reason}") if best else (None, None, f"{ratio}: {candidate.reason}")
        if best:
            _remove(best[0].path)
        best = candidate, ratio
    return (*best, "") if best else (None, None, "")


@register
class PrunedVariant(Variant):
    name = "pruned"
    Config = PrunedConfig
    config: PrunedConfig

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        return _not_applicable(model)

    def make(self, run: VariantRun) -> Outcome:
        from ..structured import Pruner

        pruner = Pruner(run.quant_base, run.calibration, multiple=self.config.multiple)
        made: dict[float, Pruned] = {}

        def make(ratio: float) -> tuple[Path, str]:
            made[ratio] = pruner.prune(ratio, run.work / f"pruned-{ratio}.onnx")
            return made[ratio].path, _recipe(made[ratio], run)

        if not (ratios := _removing(pruner, self.config.ratios)):
            return Outcome(skipped=_removes_nothing(pruner, self.config))
        candidate, ratio, failed = _largest_passing(run, self.name, ratios, make)
        if candidate is None:
            return Outcome(skipped=f"no pruning ratio passed the gate ({failed})")
        if failed:
            candidate.recipe += f" (the next ratio failed the gate: {failed})"
        return Outcome(run.keep(candidate), float_graph=candidate.path, chosen={"ratio": ratio, "pruner": pruner,
                                                                          "pruned": made[ratio]})


@register
class PrunedInt8(Variant):
    name = "pruned-int8"
    Config = PrunedInt8Config
    config: PrunedInt8Config
    reads = ("pruned",)
    reads_because = "pruned-int8 quantizes the pruned graph that passed, and skips the ratios that failed as float"

    def not_applicable(self, model: onnx.ModelProto) -> str | None:
        return _not_applicable(model)

    def make(self, run: VariantRun) -> Outcome:
        from ..passes import dynamic_int8
        from ..smooth import activation_groups
        from ..structured import Pruner
        from .smooth_int8 import smooth_quantize
        import onnx

        pruned = run.earlier("pruned")
        ratios = sorted(self.config.ratios, reverse=True)
        pruner: Pruner | None = None
        if pruned is not None:  # int8 adds error: the ratios that failed as float fail here too
            if not pruned.passed:
                return Outcome(skipped="pruned passed the gate at no ratio, so int8 on top cannot either")
            ratios = [r for r in ratios if r <= pruned.chosen["ratio"]]
            pruner = pruned.chosen["pruner"]
        pruner = pruner or Pruner(run.quant_base, run.calibration, multiple=self.config.multiple)
        if not (ratios := _removing(pruner, ratios)):
            return Outcome(skipped=_removes_nothing(pruner, self.config))
        weight = self.config.weight_type

        def make(ratio: float) -> tuple[Path, str]:
            reuse = pruned is not None and ratio == pruned.chosen["ratio"]  # pruned's own graph: read, not made again
            done = pruned.chosen["pruned"] if reuse else pruner.prune(ratio, run.work / f"pruned-int8-float-{ratio}.onnx")
            graph = done.path
            if activation_groups(onnx.load(str(graph), load_external_data=False)):
                path, _, how = smooth_quantize(run, graph, self.config.strengths, weight, f"pruned-int8-{ratio}")
            else:
                path, how = dynamic_int8(graph, run.work / f"pruned-int8-{ratio}.onnx", weight_type=weight), \
                    "as dynamic-int8"
            return path, f"{_recipe(done, run)}; then {how}"

        candidate, ratio, failed = _first_passing(run, self.name, ratios, make)
        if candidate is None:
            return Outcome(skipped=f"no pruning ratio passed the gate in int8 ({failed})")
        if failed:
            candidate.recipe += f" (larger ratios failed the gate in int8: {failed})"
        return Outcome(run.keep(candidate), chosen={"ratio": ratio})
