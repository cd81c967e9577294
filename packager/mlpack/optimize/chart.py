"""The report's chart, decided here and only drawn by the template: size against latency.

Every candidate is a point: x is its p50 latency relative to float (the geometric mean
over the measured batch sizes, the measure the "fastest" policy ranks by), y its size.
The gate's verdict is the marker (filled: pass, cross: fail), the accuracy its label, and
the Pareto front the pick came from is drawn dark: the passing variants that no other
passing one matches or beats on size, latency and accuracy at once (a dominated one is
drawn light). The target's tolerance band
(candidates within it tie) is shaded. When latency was not measured on the target, x is
the worst gate metric instead, and the chart says so.

Coordinates are SVG pixels; the template writes them as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..sizes import format_size
from .report import Candidate, OptimizationResult
from .select import NOTICEABLE_BYTES, NOTICEABLE_MS, relative_latency

WIDTH, HEIGHT = 960, 420
LEFT, RIGHT, TOP, BOTTOM = 78, 180, 34, 56  # margins around the plot area; labels may use the right one
LABEL_GAP = 15  # px between stacked point labels
CHAR_PX = 7.2  # width of a label character at 12 px, bold included, to keep labels apart


@dataclass(frozen=True)
class Tick:
    at: float  # px along its axis
    label: str


@dataclass(frozen=True)
class Point:
    name: str
    x: float
    y: float
    label: str  # beside the marker: name and accuracy
    label_x: float
    label_y: float
    anchor: str  # SVG text-anchor: "start" (label right of the marker) or "end" (left of it)
    leader: bool  # the label sits off the marker's line: draw a line from marker to label
    tooltip: str
    passed: bool
    chosen: bool
    on_front: bool
    reference: bool


@dataclass(frozen=True)
class Band:
    """The tolerance band: candidates inside it tie with the leader on the policy's measure."""

    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    x_title: str
    y_title: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    points: list[Point]
    band: Band | None
    caption: str
    legend: list[str] = field(default_factory=list)


def nice_ticks(high: float, count: int = 5, low: float = 0.0) -> list[float]:
    """Round tick values from at most `low` to at least `high`: steps of 1, 2, 2.5 or 5
    times a power of ten."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _size_unit(largest: float) -> int:
    """The binary unit sizes are written in (format_size's), so size ticks fall on round figures."""
    unit = 1
    while largest >= 1024 * unit and unit < 1024**4:
        unit *= 1024
    return unit


def pareto_front(candidates: list[Candidate], x: dict[str, float]) -> list[Candidate]:
    """Passing, pickable candidates that no other one matches or beats on size, x and
    accuracy with one strictly better: the ones a policy can rightly pick."""
    pool = [c for c in candidates if c.passed and not c.reference]

    def dominates(a: Candidate, b: Candidate) -> bool:
        no_worse = a.size_bytes <= b.size_bytes and x[a.name] <= x[b.name] and a.quality >= b.quality
        better = a.size_bytes < b.size_bytes or x[a.name] < x[b.name] or a.quality > b.quality
        return no_worse and better

    return [c for c in pool if not any(dominates(o, c) for o in pool if o is not c)]


def short_accuracy(c: Candidate) -> str:
    """The one accuracy figure a point's label has room for."""
    m = c.metrics
    if "accuracy" in m:
        return f"acc {m['accuracy']:.2%}"
    return f"worst gate metric {c.quality:.4f}" if m else "reference"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _tooltip(c: Candidate, result: OptimizationResult) -> str:
    lat = ", ".join(f"p50 b{b} {_ms(v.p50_ms)}" for b, v in sorted(c.latency.items())) or "latency not measured"
    verdict = "pass" if c.passed else f"FAIL: {c.reason}"
    return f"{c.name}: {format_size(c.size_bytes)}, {lat}; {c.accuracy_text()}; gate {verdict}"


def build_chart(result: OptimizationResult) -> Chart:
    base = result.baseline
    timed = bool(base.latency) and all(c.latency for c in result.candidates if c.passed)
    if timed:
        x = {c.name: relative_latency(c, base) for c in result.candidates}
        batches = ", ".join(str(b) for b in sorted(base.latency))
        x_title = f"p50 latency, times float's (geometric mean over batch {batches}); left is faster"
        x_label = lambda v: f"{v:.2f}x"  # noqa: E731
    else:
        x = {c.name: c.quality for c in result.candidates}
        x_title = "worst gate metric (1.0 = same outputs as float); latency was not measured on the target"
        x_label = lambda v: f"{v:.3f}"  # noqa: E731

    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    # Zoomed on the range the candidates span: their differences are what the pick weighs.
    spread = max(x.values()) - min(x.values())
    margin = max(spread * 0.15, 0.02 if not timed else 0.05)
    x_values = nice_ticks(max(x.values()) + margin, low=max(min(x.values()) - margin, 0.0))
    unit = _size_unit(max(c.size_bytes for c in result.candidates))
    y_values = [v * unit for v in nice_ticks(max(c.size_bytes for c in result.candidates) * 1.1 / unit)]
    x_lo, x_hi, y_hi = x_values[0], x_values[-1], y_values[-1]

    def px(v: float) -> float:
        return round(LEFT + (v - x_lo) / (x_hi - x_lo) * plot_w, 1)

    def py(v: float) -> float:
        return round(TOP + plot_h - v / y_hi * plot_h, 1)

    front = pareto_front(result.candidates, x) if timed else [c for c in result.candidates if c.passed]
    on_front = {c.name for c in front}
    points = _points(result, x, px, py, on_front)

    band = None
    pickable = [c for c in result.candidates if c.passed and not c.reference]
    tolerance = result.tolerance
    if timed and pickable and result.policy == "fastest" and tolerance:
        best = min(x[c.name] for c in pickable)
        right = min(best * (1 + tolerance), x_hi)
        band = Band(px(best), TOP, round(px(right) - px(best), 1), plot_h,
                    f"within {tolerance:.0%} of the fastest: a tie (as is being within {NOTICEABLE_MS} ms "
                    "of it at every batch size)")
    elif timed and pickable and result.policy == "smallest" and tolerance:
        best = min(c.size_bytes for c in pickable)
        top = min(best * (1 + tolerance), y_hi)
        band = Band(LEFT, py(top), plot_w, round(py(best) - py(top), 1),
                    f"within {tolerance:.0%} of the smallest: a tie (as is being within "
                    f"{format_size(NOTICEABLE_BYTES)} of it)")

    return Chart(
        title="Size against latency" if timed else "Size against accuracy",
        width=WIDTH, height=HEIGHT, left=LEFT, top=TOP, right=LEFT + plot_w, bottom=TOP + plot_h,
        x_title=x_title, y_title="size on disk",
        x_ticks=[Tick(px(v), x_label(v)) for v in x_values],
        y_ticks=[Tick(py(v), format_size(v) if v else "0") for v in y_values],
        points=points, band=band,
        caption=_caption(result, timed),
        legend=["dot: passed the accuracy gate", "cross: failed it", "ring: the variant that ships",
                "dark dot: on the Pareto front (size, latency, accuracy)",
                "light dot: another passing variant is as small, as fast and as accurate, and better on one"],
    )


def _points(result: OptimizationResult, x: dict[str, float], px, py, on_front: set[str]) -> list[Point]:
    """Markers with their labels; each label takes the first place beside its marker that
    overlaps no marker and no label placed before it."""
    markers = [(px(x[c.name]), py(c.size_bytes)) for c in result.candidates]
    boxes: list[tuple[float, float, float, float]] = [(mx - 12, my - 12, mx + 12, my + 12) for mx, my in markers]
    points = []
    order = sorted(result.candidates, key=lambda c: (c is not result.chosen, py(c.size_bytes)))
    for c in order:
        cx, cy = px(x[c.name]), py(c.size_bytes)
        label = f"{c.name}{' (shipped)' if c is result.chosen else ''} · {short_accuracy(c)}"
        width = CHAR_PX * len(label)
        lx, ly, anchor = _place(cx, cy, width, boxes)
        leader = abs(ly - (cy + 4)) > 1  # displaced: a thin line shows whose label it is
        left = lx - width if anchor == "end" else lx
        boxes.append((left, ly - 12, left + width, ly + 3))
        points.append(Point(
            name=c.name, x=cx, y=cy, label=label, label_x=round(lx, 1), label_y=round(ly, 1), anchor=anchor,
            leader=leader,
            tooltip=_tooltip(c, result), passed=c.passed, chosen=c is result.chosen,
            on_front=c.name in on_front, reference=c.reference,
        ))
    return sorted(points, key=lambda p: p.chosen)  # the shipped one drawn last, on top


def _place(cx: float, cy: float, width: float, boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, str]:
    """(x, baseline y, text-anchor) of a label beside the marker at (cx, cy)."""
    def free(lx: float, ly: float, anchor: str) -> bool:
        left = lx - width if anchor == "end" else lx
        inside = LEFT <= left and left + width <= WIDTH - 4 and TOP <= ly - 12 and ly <= HEIGHT - BOTTOM
        return inside and not any(a < left + width and left < b and c < ly + 3 and ly - 12 < d
                                  for a, c, b, d in boxes)

    for step in range(12):
        for dy in ((0, 1), (0, -1))[: 1 if step == 0 else 2]:
            ly = cy + 4 + dy[1] * step * LABEL_GAP
            for lx, anchor in ((cx + 16, "start"), (cx - 16, "end")):
                if free(lx, ly, anchor):
                    return lx, ly, anchor
    return cx + 16, cy + 4, "start"


def _caption(result: OptimizationResult, timed: bool) -> str:
    what = "fastest" if result.policy == "fastest" else "smallest"
    if not timed:
        stand_in = ", so the smallest stands in for the fastest" if what == "fastest" else ""
        return (f"Latency {result.latency_note or 'was not measured'}{stand_in}: "
                "the smallest variant that passes the gate ships.")
    then = "smaller" if what == "fastest" else "faster"
    return (f"Each point is a candidate. The target's policy ships the {what} variant that passes the gate; "
            f"candidates within its tolerance (shaded) tie, and the tie goes to the more accurate, then the {then}.")
