"""The optimization report: every candidate with its size, latency, accuracy and verdict.

The same facts go out three ways: `table()` for the terminal, `to_markdown()` as the
artifact's report.md, `to_json()` as report.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sizes import format_size
from .gate import GateSettings
from .measure import Latency


@dataclass
class Candidate:
    name: str
    path: Path
    size_bytes: int
    recipe: str = ""  # how it was made, in words
    passed: bool = True
    reason: str = ""  # the gate's verdict in words
    metrics: dict[str, float] = field(default_factory=dict)
    quality: float = 1.0
    latency: dict[int, Latency] = field(default_factory=dict)
    reference: bool = False  # measured for comparison only (e.g. a plain recipe), never picked
    held: str = ""  # why a variant that passed may not ship (its gate ran on synthetic inputs)
    # The candidate whose own graph its session runs once loaded (stored-int8: float's, checked):
    # the same computation, so it is not timed: its latency is that one's (timed_as).
    runs_as: str = ""

    def accuracy_text(self) -> str:
        m = self.metrics
        parts = []
        for key, value in m.items():
            if key.endswith(".cosine_mean"):
                parts.append(f"cos mean {value:.4f} min {m[key.replace('mean', 'min')]:.4f}")
            elif key.endswith(".top1_agreement") or key.endswith(".agreement"):
                ties = int(m.get(key.rsplit(".", 1)[0] + ".near_ties", 0))
                parts.append(f"top-1 agree {value:.2%}" + (f" ({ties} near-ties set aside)" if ties else ""))
            elif key.endswith(".text_agreement"):
                parts.append(f"same CTC text {value:.2%} (positions {m[key.replace('text', 'position')]:.2%})")
            elif key.endswith(".sequence_agreement"):
                parts.append(f"same at every position {value:.2%} "
                             f"(positions {m[key.replace('sequence', 'position')]:.2%})")
            elif key.endswith(".relative_error"):
                parts.append(f"max err {value:.3f} of spread")
        if "accuracy" in m:
            parts.append(f"acc {m['accuracy']:.2%} ({0.0 - m['accuracy_drop'] * 100:+.2f} pt)")
        # One agreement figure is enough when several outputs say the same thing.
        return ", ".join(dict.fromkeys(parts)) or "-"


def timed_as(candidates: list[Candidate]) -> dict[str, Candidate]:
    """Candidates whose session runs another candidate's graph once loaded, by name, each with
    that one: a timing of their own would measure the machine, not the model, and hold one
    more session's weights while every session is open (round-robin)."""
    by_name = {c.name: c for c in candidates}
    return {c.name: by_name[c.runs_as] for c in candidates
            if c.runs_as in by_name and c.runs_as != c.name and not by_name[c.runs_as].runs_as}


def copy_latency(candidates: list[Candidate], same: dict[str, Candidate]) -> None:
    """Give each candidate of `same` (from timed_as) the latency of the one whose graph it runs."""
    for c in candidates:
        if c.name in same:
            c.latency = dict(same[c.name].latency)


@dataclass
class OptimizationResult:
    candidates: list[Candidate]
    chosen: Candidate
    data_source: str  # where accuracy was measured
    why: str
    target: str = ""
    policy: str = ""
    gate: GateSettings = field(default_factory=GateSettings)
    latency_note: str = ""  # e.g. "not measured on target: ..."; empty when measured there
    measured_on: str = ""  # the execution provider that timed the candidates
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sensitive_layers: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: float = 0.0  # the policy's tie band, as a fraction of the leader's measure
    synthetic: bool = False  # accuracy measured on inputs made from the signature, not real data
    gate_rows: int = 0  # rows the gate compared outputs on (0: no data)
    calibration_rows: int = 0  # rows calibration used (the same rows when there were too few to split)
    gated_with: str = ""  # the onnxruntime release and provider the gate ran on
    rewrites: list[str] = field(default_factory=list)  # what was changed in the model for the pinned runtime
    near_ties: int = 0  # gate rows where float's top-2 margin is a near-tie: they decide no agreement
    problem: str = ""  # why no variant was compared with float (then float ships alone)
    headline: str = ""  # the one line a console prints when the pick needs explaining (held back, nothing made)

    @property
    def baseline(self) -> Candidate:
        return self.candidates[0]

    def _ratio(self, c: Candidate, batch: int, untimed: dict[str, Candidate]) -> str:
        base, mine = self.baseline.latency.get(batch), c.latency.get(batch)
        if not base or not mine:
            return "-"
        if c.name in untimed:  # not timed: the latency is the other's (a note says why)
            return f"= {c.runs_as}"
        return f"{mine.p50_ms / base.p50_ms:.2f}x"

    def _rows(self) -> list[list[str]]:
        batches = sorted({b for c in self.candidates for b in c.latency})
        header = ["variant", "size", "vs float"]
        for b in batches:
            header += [f"p50 b{b}", f"p95 b{b}", "vs float"]
        header += ["accuracy vs float", "gate"]
        rows = [header]
        untimed = timed_as(self.candidates)
        for c in self.candidates:
            row = [c.name + (" *" if c is self.chosen else " (reference)" if c.reference else ""), format_size(c.size_bytes),
                   f"{c.size_bytes / self.baseline.size_bytes:.2f}x"]
            for b in batches:
                lat = c.latency.get(b)
                row += [_ms(lat.p50_ms) if lat else "-", _ms(lat.p95_ms) if lat else "-",
                        self._ratio(c, b, untimed)]
            row += [c.accuracy_text(), _verdict(c)]
            rows.append(row)
        return rows

    def table(self) -> str:
        """The candidate table as aligned text lines, for the terminal."""
        rows = self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"* chosen: {self.chosen.name} ({self.why})")
        if self.headline:
            lines.append(self.headline)
        lines.append(f"accuracy measured on {self.data_source}")
        if self.latency_note:
            lines.append(f"latency {self.latency_note}")
        for c in self.candidates:
            if not c.passed:
                lines.append(f"{c.name} failed the gate: {c.reason}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = self._rows()
        md = [
            f"# Optimization report: {self.target}", "",
            f"**Chosen: `{self.chosen.name}`** ({format_size(self.chosen.size_bytes)}, "
            f"{self.chosen.size_bytes / self.baseline.size_bytes:.2f}x the float size). "
            f"{self.why[:1].upper() + self.why[1:]}.", "",
            *([f"- **{self.headline}**"] if self.headline else []),
            f"- Accuracy measured on: {self.data_source}.",
            f"- Policy: {self.policy} variant that passes the gate.",
            f"- Latency: {self.latency_note or 'measured with ' + self.measured_on}.",
            *([f"- Gate ran in: {self.gated_with}."] if self.gated_with else []),
            *[f"- Changed for that runtime: {r}." for r in self.rewrites],
            "", "| " + " | ".join(rows[0]) + " |",
            "|" + "|".join("---" if i in (0, len(rows[0]) - 1, len(rows[0]) - 2) else "---:"
                           for i in range(len(rows[0]))) + "|",
        ]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        md += ["", "## How each variant was made", ""]
        md += [f"- `{c.name}`: {c.recipe}. Gate: {'pass' if c.passed else 'FAIL'} ({c.reason})"
               + (f"; held back: {c.held}." if c.held else ".") for c in self.candidates]
        if self.skipped:
            md += ["", "## Not tried", ""] + [f"- `{name}`: {why}" for name, why in self.skipped]
        if self.sensitive_layers:
            md += ["", "## Most error-sensitive nodes (relative error of the model's output with only that node in int8)", ""]
            md += [f"- `{name}`: {err:.4f}" for name, err in self.sensitive_layers[:8]]
        md += ["", "## Gate", ""]
        md += [f"- `{k}`: {v}" for k, v in self.gate.model_dump().items()]
        if self.notes:
            md += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "policy": self.policy,
            "data_source": self.data_source,
            "chosen": self.chosen.name,
            "why": self.why,
            "headline": self.headline or None,
            "synthetic": self.synthetic,
            "gate_rows": self.gate_rows,
            "calibration_rows": self.calibration_rows,
            "near_ties": self.near_ties,
            "latency_measured_on": self.measured_on or None,
            "latency_note": self.latency_note or None,
            "gated_with": self.gated_with or None,
            "rewrites": self.rewrites,
            "gate": self.gate.model_dump(),
            "candidates": [
                {
                    "name": c.name,
                    "file": c.path.name,
                    "recipe": c.recipe,
                    "size_bytes": c.size_bytes,
                    "size_ratio": round(c.size_bytes / self.baseline.size_bytes, 4),
                    "passed": c.passed,
                    "held_back": c.held or None,
                    "runs_as": c.runs_as or None,
                    "reference": c.reference,
                    "reason": c.reason,
                    "metrics": c.metrics,
                    "latency_ms": {
                        f"batch_{b}": {"p50": round(lat.p50_ms, 4), "p95": round(lat.p95_ms, 4)}
                        for b, lat in sorted(c.latency.items())
                    },
                }
                for c in self.candidates
            ],
            "skipped": [{"name": n, "why": w} for n, w in self.skipped],
            "sensitive_layers": [{"node": n, "int8_relative_error": e} for n, e in self.sensitive_layers],
            "notes": self.notes,
        }


def _verdict(c: Candidate) -> str:
    return "held" if c.held else "pass" if c.passed else "FAIL"


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"
