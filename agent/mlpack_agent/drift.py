"""Drift: how far the model's recent inputs and outputs are from its calibration data.

The served model sends, with its inference events, the bin counts of its requests'
features (mlpack_runtime.drift: never the data). The agent adds them into a sliding
window of the last `drift.window_rows` rows or so: slices of at least window_rows /
`drift.slices` rows (a datagram's counts are never split: a slice may hold more), the
oldest leaving once the newer ones hold window_rows without it. On each collection (a
scrape, an OTLP export) it compares the window with the profile's calibration counts
from its configuration:

- population stability index, PSI = sum((p - q) * ln(p / q)) over a feature's slots,
  with half a count added to every slot of both sides (no slot is empty);
- Jensen-Shannon distance (base 2, between 0 and 1) of the raw shares;
- the share of the window's rows outside the profile's range, per feature, and the
  share of rows with any input outside it.

Scores appear once the window holds `drift.min_rows` rows (default: half the window):
a few requests are not a distribution. Feature names, the only labels, come from the
configuration; a datagram carries counts in the profile's slot order and is refused
(`mlpack_agent_refused_total{reason="drift"}`) unless its profile id, length and
per-feature row sums match. Standard library only; the window's memory is a few lists of
one int per slot (slices + 2 of them).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from operator import add, sub
from typing import Any, Iterator

from .config import DriftConfig

SMOOTHING = 0.5  # pseudo-count per slot, for PSI (Jeffreys' prior)


@dataclass(frozen=True)
class Feature:
    name: str
    source: str
    start: int  # first slot in the datagram's counts
    end: int
    reference: tuple[float, ...]  # smoothed shares, for PSI
    shares: tuple[float, ...]  # raw shares, for the Jensen-Shannon distance
    outside: tuple[int, ...]  # absolute slots outside the profile's range

    @property
    def attributes(self) -> dict[str, str]:
        return {"feature": self.name, "source": self.source}


@dataclass(frozen=True)
class Scores:
    rows: int
    psi: dict[Feature, float]
    js: dict[Feature, float]
    out_of_range: dict[Feature, float]
    inputs_out_of_range: float


def _features(config: DriftConfig) -> list[Feature]:
    features, start = [], 0
    for raw in config.features:
        counts = raw["reference"]
        total, k = sum(counts), len(counts)
        features.append(Feature(
            name=raw["name"], source=raw["source"], start=start, end=start + k,
            reference=tuple((c + SMOOTHING) / (total + SMOOTHING * k) for c in counts),
            shares=tuple(c / total for c in counts),
            outside=tuple(start + j for j in raw["outside"]),
        ))
        start += k
    return features


class DriftWindow:
    """The sliding window of one service's bin counts, and its scores against the profile."""

    def __init__(self, config: DriftConfig) -> None:
        self.profile = config.profile
        self.features = _features(config)
        self.slots = self.features[-1].end if self.features else 0
        self.window_rows = config.window_rows
        self.slice_rows = max(1, -(-config.window_rows // config.slices))
        self.min_rows = config.min_rows or max(1, config.window_rows // 2)
        self.rows_seen = 0
        self._closed: deque[tuple[int, int, list[int]]] = deque()
        self._current: tuple[int, int, list[int]] = (0, 0, [0] * self.slots)
        # (rows, rows with an input outside, counts per slot): replaced whole, so that a
        # collection reads one consistent window while the recorder adds.
        self.window: tuple[int, int, list[int]] = (0, 0, [0] * self.slots)
        self._lock = threading.Lock()
        self._cached: tuple[Any, Scores | None] = (None, None)

    def add(self, drift: dict[str, Any]) -> bool:
        """Add one datagram's counts (validate.py checked their shape); False: refused."""
        counts, rows, outside = drift["counts"], drift["rows"], drift["outside"]
        if drift["profile"] != self.profile or len(counts) != self.slots:
            return False
        if any(sum(counts[f.start:f.end]) != rows for f in self.features):
            return False  # every row lands in exactly one slot of every feature
        with self._lock:
            c_rows, c_out, current = self._current
            c_rows, c_out, current = c_rows + rows, c_out + outside, list(map(add, current, counts))
            w_rows, w_out, window = self.window
            w_rows, w_out, window = w_rows + rows, w_out + outside, list(map(add, window, counts))
            if c_rows >= self.slice_rows:  # the slice is full: the oldest leave once the rest is enough
                self._closed.append((c_rows, c_out, current))
                c_rows, c_out, current = 0, 0, [0] * self.slots
                while self._closed and w_rows - self._closed[0][0] >= self.window_rows:
                    o_rows, o_out, old = self._closed.popleft()
                    w_rows, w_out, window = w_rows - o_rows, w_out - o_out, list(map(sub, window, old))
            self._current = (c_rows, c_out, current)
            self.window = (w_rows, w_out, window)
            self.rows_seen += rows
        return True

    def scores(self) -> Scores | None:
        """The window against the profile; None until it holds `min_rows` rows. Computed once
        per window state, however many instruments read it."""
        window = self.window
        cached_for, cached = self._cached
        if cached_for is window:
            return cached
        rows, outside, counts = window
        scores = None
        if rows >= self.min_rows:
            psi, js, out = {}, {}, {}
            for f in self.features:
                part = counts[f.start:f.end]
                psi[f] = _psi(part, rows, f.reference)
                js[f] = _js_distance(part, rows, f.shares)
                out[f] = sum(counts[j] for j in f.outside) / rows
            scores = Scores(rows, psi, js, out, outside / rows)
        self._cached = (window, scores)
        return scores


def _psi(counts: list[int], rows: int, reference: tuple[float, ...]) -> float:
    denominator = rows + SMOOTHING * len(counts)
    total = 0.0
    for c, q in zip(counts, reference):
        p = (c + SMOOTHING) / denominator
        total += (p - q) * math.log(p / q)
    return total


def _js_distance(counts: list[int], rows: int, shares: tuple[float, ...]) -> float:
    divergence = 0.0
    for c, b in zip(counts, shares):
        a = c / rows
        m = (a + b) / 2
        if a > 0:
            divergence += a * math.log2(a / m)
        if b > 0:
            divergence += b * math.log2(b / m)
    return math.sqrt(max(divergence / 2, 0.0))


def observations(scores: Scores | None, which: str) -> Iterator[tuple[float, dict[str, str]]]:
    """(value, attributes) of one per-feature score: "psi", "js" or "out_of_range"."""
    if scores is None:
        return
    for feature, value in getattr(scores, which).items():
        yield value, feature.attributes
