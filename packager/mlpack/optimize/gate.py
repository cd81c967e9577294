"""The accuracy gate: does a variant still answer what the float model answers?

Each output is compared with the float model's on the same rows, with a metric that
fits it: classification outputs by top-1 agreement (and accuracy when labels are
given), embeddings by cosine similarity, small regression outputs by error relative to
the output's spread. Defaults are strict; every threshold is a `GateSettings` field.

A row on which float itself barely prefers its top class (its top-2 margin is a sliver of
the row's range) is a near-tie: any variant may flip it, and one flip among 48 rows would
fail a 99% gate. Such rows do not decide top-1 (or label) agreement; the verdict counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

OutputKind = Literal["labels", "classification", "sequence", "ctc", "embedding", "regression"]
CTC_BLANK = 0  # the blank class of a CTC output: PaddleOCR's, and PyTorch's CTCLoss default


class GateSettings(BaseModel):
    """Thresholds a variant must meet against the float model. Defaults are strict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_top1_agreement: float = Field(
        0.99, ge=0, le=1, description="classification: share of rows whose top class matches float (sequences: "
                                      "whose top class matches at every position)"
    )
    max_accuracy_drop: float = Field(
        0.005, ge=0, le=1, description="classification with labels: accuracy may fall at most this (0.005 = 0.5 points)"
    )
    min_cosine_mean: float = Field(
        0.99, ge=-1, le=1, description="embeddings: mean cosine similarity to the float output"
    )
    min_cosine_min: float = Field(
        0.95, ge=-1, le=1, description="embeddings: worst row's cosine similarity to the float output"
    )
    max_relative_error: float = Field(
        0.05, ge=0, description="regression: max |error| divided by the float output's standard deviation"
    )
    near_tie: float = Field(
        0.001, ge=0, lt=1,
        description="classification: a row whose float top-2 margin is at most this share of the row's range "
                    "(max - min) is a near-tie and does not decide top-1 agreement",
    )
    task: Literal["auto", "classification", "sequence", "ctc", "embedding", "regression"] = Field(
        "auto", description="how to read float outputs; auto guesses from shape and values; ctc: "
                            "[rows, steps, classes] read as CTC text (class 0 blank, repeats merged), a row "
                            "agrees when its text does"
    )
    synthetic: Literal["refuse", "allow"] = Field(
        "refuse",
        description="without --calibration the gate runs on synthetic inputs, which say nothing about real data: "
                    "refuse ships no variant whose accuracy depends on the data (int8, mixed), allow ships it "
                    "and report and manifest say so",
    )


@dataclass
class Verdict:
    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    quality: float = 1.0  # one number to rank passing variants: the worst primary metric

    @property
    def reason(self) -> str:
        return "; ".join(self.failures) if self.failures else "meets every threshold"


def output_kind(reference: np.ndarray, name: str, task: str = "auto") -> OutputKind:
    """Guess what an output is from the float model's values."""
    if reference.dtype.kind in "iubOUS":  # integer, boolean or string class labels
        return "labels"
    if task != "auto" and (task != "ctc" or reference.ndim == 3):  # other outputs of a CTC model: guessed
        return task  # type: ignore[return-value]
    width = int(np.prod(reference.shape[1:])) if reference.ndim > 1 else 1
    if reference.ndim == 3 and reference.shape[-1] >= 2 and _is_probability(reference):
        # [rows, positions, classes]: a class per position (a CTC recognizer, a token tagger).
        # What the row says is its classes read in order: one position changed changes it.
        return "sequence"
    if reference.ndim == 2 and width >= 2:
        if _is_probability(reference) or any(word in name.lower() for word in ("logit", "prob", "score", "class")):
            return "classification"
    return "embedding" if width >= 4 else "regression"


def ctc_text(steps: np.ndarray) -> tuple[int, ...]:
    """What a CTC output says for one row ([steps, classes]): the best class of each step,
    repeats merged, blanks dropped. Steps that differ only where a character starts, ends or
    repeats (blank against the character) read the same."""
    best = steps.argmax(axis=-1)
    keep = np.r_[True, best[1:] != best[:-1]] & (best != CTC_BLANK)
    return tuple(int(c) for c in best[keep])


def _is_probability(reference: np.ndarray) -> bool:
    """Non-negative, and summing to 1 over the last axis."""
    values = reference.astype(np.float64)
    return bool((values >= -1e-6).all() and np.allclose(values.sum(axis=-1), 1.0, atol=1e-3))


def _tied(values: np.ndarray, settings: GateSettings) -> np.ndarray:
    """Where the top-2 margin over the last axis is at most `settings.near_tie` of its range."""
    values = values.astype(np.float64)
    top2 = np.sort(values, axis=-1)[..., -2:]
    spread = values.max(axis=-1) - values.min(axis=-1)
    return (top2[..., 1] - top2[..., 0]) <= settings.near_tie * spread


def near_ties(reference: list[np.ndarray], names: list[str], settings: GateSettings) -> np.ndarray | None:
    """Rows (a boolean mask) on which some classification output of float is a near-tie:
    its top-2 margin is at most `settings.near_tie` of the row's range. None: no such output."""
    mask = None
    for name, ref in zip(names, reference):
        if output_kind(ref, name, settings.task) != "classification":
            continue
        tied = _tied(ref, settings)
        mask = tied if mask is None else mask | tied
    return mask


def _agreement(same: np.ndarray, ties: np.ndarray | None) -> tuple[float, int]:
    """Mean agreement over the rows that are not near-ties (all rows if every one is), and how
    many rows were set aside. `same`: per row, the share of its values equal to float's."""
    if ties is None or len(ties) != len(same) or ties.all():
        return float(np.mean(same)), 0
    return float(np.mean(same[~ties])), int(ties.sum())


def _agreement_text(what: str, agreement: float, rows: int, set_aside: int) -> str:
    if not set_aside:
        return f"{what} on {agreement:.2%} of rows"
    return f"{what} on {agreement:.2%} of the {rows - set_aside} rows that are not near-ties ({set_aside} set aside)"


def compare(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    names: list[str],
    settings: GateSettings,
    labels: np.ndarray | None = None,
) -> Verdict:
    """Compare a variant's outputs with the float model's, output by output."""
    verdict = Verdict(passed=True)
    qualities: list[float] = []
    ties = near_ties(reference, names, settings)
    gate = f"(gate {settings.min_top1_agreement:.2%})"
    for name, ref, got in zip(names, reference, candidate):
        kind = output_kind(ref, name, settings.task)
        key = f"{name}."
        if kind == "labels":
            same = (ref.reshape(len(ref), -1) == got.reshape(len(got), -1)).mean(axis=1)
            agreement, set_aside = _agreement(same, ties)
            verdict.metrics[key + "agreement"] = agreement
            verdict.metrics[key + "near_ties"] = set_aside
            _check(verdict, agreement >= settings.min_top1_agreement,
                   f"{name}: {_agreement_text('labels agree', agreement, len(same), set_aside)} {gate}")
            qualities.append(agreement)
            if labels is not None and ref.ndim == 1:
                _accuracy(verdict, name, ref, got, labels, settings)
        elif kind == "classification":
            top_ref, top_got = ref.argmax(axis=1), got.argmax(axis=1)
            agreement, set_aside = _agreement(top_ref == top_got, ties)
            verdict.metrics[key + "top1_agreement"] = agreement
            verdict.metrics[key + "near_ties"] = set_aside
            verdict.metrics[key + "max_abs_error"] = float(np.max(np.abs(ref - got)))
            _check(verdict, agreement >= settings.min_top1_agreement,
                   f"{name}: {_agreement_text('top-1 agrees', agreement, len(top_ref), set_aside)} {gate}")
            qualities.append(agreement)
            if labels is not None:
                _accuracy(verdict, name, top_ref, top_got, labels, settings)
        elif kind == "sequence":
            same = ref.argmax(axis=-1) == got.argmax(axis=-1)  # [rows, positions]
            tied = _tied(ref, settings)
            # A row agrees when every position whose float top-2 margin is outside the noise agrees.
            agreement = float((same | tied).all(axis=1).mean())
            verdict.metrics[key + "sequence_agreement"] = agreement
            verdict.metrics[key + "position_agreement"] = float(same.mean())
            verdict.metrics[key + "near_tie_positions"] = int(tied.sum())
            set_aside = f" ({int(tied.sum())} near-tie positions not counted)" if tied.any() else ""
            _check(verdict, agreement >= settings.min_top1_agreement,
                   f"{name}: {agreement:.2%} of {len(same)} rows have float's top class at every position"
                   f"{set_aside} {gate}")
            qualities.append(agreement)
        elif kind == "ctc":
            agreement = float(np.mean([ctc_text(r) == ctc_text(g) for r, g in zip(ref, got)]))
            verdict.metrics[key + "text_agreement"] = agreement
            verdict.metrics[key + "position_agreement"] = float((ref.argmax(axis=-1) == got.argmax(axis=-1)).mean())
            _check(verdict, agreement >= settings.min_top1_agreement,
                   f"{name}: {agreement:.2%} of {len(ref)} rows read the same text as float (CTC) {gate}")
            qualities.append(agreement)
        elif kind == "embedding":
            a = ref.reshape(len(ref), -1).astype(np.float64)
            b = got.reshape(len(got), -1).astype(np.float64)
            norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
            cosine = (a * b).sum(axis=1) / np.maximum(norm_a * norm_b, 1e-30)
            # Equal rows (two zero rows too) agree exactly, whatever the rounding of the sums says;
            # a zero row against a non-zero one does not (cosine 0).
            cosine = np.where((a == b).all(axis=1), 1.0, cosine)
            if not np.isfinite(b).all():
                cosine = np.where(np.isfinite(b).all(axis=1), cosine, -1.0)
            verdict.metrics[key + "cosine_mean"] = float(cosine.mean())
            verdict.metrics[key + "cosine_min"] = float(cosine.min())
            verdict.metrics[key + "max_abs_error"] = float(np.nanmax(np.abs(a - b)))
            _check(verdict, cosine.mean() >= settings.min_cosine_mean,
                   f"{name}: mean cosine {cosine.mean():.4f} < {settings.min_cosine_mean}")
            _check(verdict, cosine.min() >= settings.min_cosine_min,
                   f"{name}: min cosine {cosine.min():.4f} < {settings.min_cosine_min}")
            qualities.append(float(cosine.mean()))
        else:
            spread = float(np.std(ref)) or 1.0
            relative = float(np.max(np.abs(ref - got))) / spread
            verdict.metrics[key + "max_abs_error"] = float(np.max(np.abs(ref - got)))
            verdict.metrics[key + "relative_error"] = relative
            _check(verdict, relative <= settings.max_relative_error,
                   f"{name}: max error is {relative:.3f} of the output's spread (gate {settings.max_relative_error})")
            qualities.append(1.0 - relative)
    verdict.quality = min(qualities) if qualities else 1.0
    return verdict


def _accuracy(verdict: Verdict, name: str, ref: np.ndarray, got: np.ndarray, labels: np.ndarray,
              settings: GateSettings) -> None:
    if "accuracy" in verdict.metrics:  # one accuracy per model: the first classifier output
        return
    float_accuracy = float(np.mean(ref == labels))
    accuracy = float(np.mean(got == labels))
    drop = float_accuracy - accuracy
    verdict.metrics.update(accuracy=accuracy, float_accuracy=float_accuracy, accuracy_drop=drop)
    _check(verdict, drop <= settings.max_accuracy_drop + 1e-12,
           f"{name}: accuracy {accuracy:.2%} vs float {float_accuracy:.2%}, "
           f"a drop of {drop * 100:.2f} points (gate {settings.max_accuracy_drop * 100:.2f})")


def _check(verdict: Verdict, ok: bool, failure: str) -> None:
    if not ok:
        verdict.passed = False
        verdict.failures.append(failure)
