"""Drift: each request's inputs and outputs as bin counts of the artifact's profile.

The profile (`drift/profile.json`, written at build from the calibration data, see
docs/agent.md) fixes, per feature, histogram edges and the calibration data's counts.
A feature is a column of a [rows, columns] input, a per-row statistic of any other
tensor (mean, std, norm, token count, ...), or an output's class. Every row lands in
exactly one slot per feature: `below` the profile's range, one of its bins, or `above`
it (NaN too); a class output has a slot per class and one for any other class.

`DriftMeter` is what a served model uses: `add` keeps a reference to the request's
arrays (no copy, no computation in the request path), and `take` (called by the agent
client when it sends a datagram, at most every TAKE_INTERVAL_S) bins everything added
since, all requests at once, and returns the summed counts. Nothing of the data itself
leaves: only counts. Beyond MAX_BINNED_PER_S requests a second, each request is kept
with probability MAX_BINNED_PER_S / the last second's rate (at random, not every n-th:
traffic that repeats with a period would otherwise be sampled at one phase of it), and
never more than MAX_BINNED_PER_S in a second: a drift window needs a sample, not every
row, and so the cost per request stays bounded however busy the service is. The build uses
the same `Profile.count` to compute the calibration data's own counts, so served and
reference counts are binned by the same code.

numpy only (this module ships in every artifact as part of mlpack_runtime).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Sequence

import numpy as np

FORMAT = "mlpack-drift-profile"
VERSION = 1
# Requests kept for binning before `take` bins them anyway, and the input bytes they may hold.
MAX_PENDING_REQUESTS = 256
MAX_PENDING_BYTES = 8 * 2**20
# Requests binned per second at most (a systematic sample beyond), and how often counts go out.
MAX_BINNED_PER_S = 1000
TAKE_INTERVAL_S = 0.2

# Per-row statistics a profile may name, by tensor kind.
ROW_STATS = ("mean", "std", "norm", "nonzero", "nonzero_mean", "chars", "words", "max", "centroid_cosine")


def _flat(array: np.ndarray, rows: int) -> np.ndarray:
    return array.reshape(rows, -1)


def row_statistic(stat: str, array: Any, centroid: np.ndarray | None = None, pad: int = 0) -> np.ndarray:
    """One value per row (float64) of `array` (first axis = rows). `nonzero` counts the values
    other than `pad` (a tokenizer's padding id: the row's token count), `nonzero_mean` is
    their mean."""
    array = np.asarray(array)
    rows = array.shape[0] if array.ndim else 1
    if stat in ("chars", "words"):
        strings = [str(v) for v in array.reshape(rows, -1).ravel()]
        per = [len(s) if stat == "chars" else len(s.split()) for s in strings]
        return np.asarray(per, dtype=np.float64).reshape(rows, -1).sum(axis=1)
    if stat in ("nonzero", "nonzero_mean"):
        x = _flat(array, rows)
        kept = x != pad
        count = np.count_nonzero(kept, axis=1)
        if stat == "nonzero":
            return count.astype(np.float64)
        return np.where(kept, x, 0).sum(axis=1, dtype=np.float64) / np.maximum(count, 1)
    x = _flat(array, rows).astype(np.float64, copy=False)
    if stat == "mean":
        return x.mean(axis=1) if x.shape[1] else np.zeros(rows)
    if stat == "std":
        return x.std(axis=1) if x.shape[1] else np.zeros(rows)
    if stat == "max":
        return x.max(axis=1) if x.shape[1] else np.zeros(rows)
    if stat == "norm":
        return np.sqrt(np.einsum("ij,ij->i", x, x))
    if stat == "centroid_cosine":
        if centroid is None or x.shape[1] != centroid.shape[0]:
            raise ValueError("centroid_cosine needs a centroid of the row's length")
        norms = np.sqrt(np.einsum("ij,ij->i", x, x)) * float(np.sqrt(centroid @ centroid))
        return (x @ centroid) / np.where(norms > 0, norms, 1.0)
    raise ValueError(f"unknown row statistic {stat!r}")


class _Bins:
    """Numeric features binned together: the columns of a [rows, features] matrix.

    Slots of a feature with edges e0..ek: 0 below e0, 1..k the bins [e0, e1), ...,
    [e(k-1), ek] (the last one closed), k+1 above ek or NaN."""

    def __init__(self, edges: Sequence[Sequence[float]], dtype: np.dtype, offsets: np.ndarray) -> None:
        width = max(max(len(e) - 2 for e in edges), 1)
        self.lo = np.array([e[0] for e in edges], dtype=dtype)
        self.hi = np.array([e[-1] for e in edges], dtype=dtype)
        self.interior = np.full((len(edges), width), np.inf, dtype=dtype)
        for i, e in enumerate(edges):
            self.interior[i, : len(e) - 2] = e[1:-1]
        self.above = np.array([len(e) for e in edges], dtype=np.int64)
        self.offsets = offsets
        self.dtype = dtype

    def slots(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(global slot indices [rows, features], outside the range [rows, features])."""
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        index = 1 + np.count_nonzero(x[:, :, None] >= self.interior, axis=2)
        below = x < self.lo
        above = ~(x <= self.hi)  # NaN is above
        index = np.where(below, 0, np.where(above, self.above, index))
        return self.offsets + index, below | above


class _Group:
    """One tensor's features: its columns, its per-row statistics, or its classes."""

    def __init__(self, spec: dict[str, Any], offset: int) -> None:
        self.tensor: str = spec["tensor"]
        self.source: str = spec["source"]
        self.kind: str = spec["kind"]
        self.features: list[dict[str, Any]] = spec["features"]
        sizes = [slot_count(f) for f in self.features]
        self.offsets = offset + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.size = int(sum(sizes))
        self.centroid = np.asarray(spec["centroid"], dtype=np.float64) if spec.get("centroid") else None
        self.pad = int(spec.get("pad", 0))
        if self.kind == "classes":
            classes = self.features[0]["classes"]
            self.strings = any(isinstance(c, str) for c in classes)
            self.lookup = {c: i for i, c in enumerate(classes)}
            self.sorted = None if self.strings else np.array(sorted(classes), dtype=np.int64)
            self.sorted_slot = None if self.strings else np.array(
                [self.lookup[c] for c in sorted(classes)], dtype=np.int64)
            self.other = len(classes)
        else:
            dtype = np.dtype(spec.get("dtype", "float64")) if self.kind == "columns" else np.dtype(np.float64)
            if dtype.kind != "f":
                dtype = np.dtype(np.float64)
            self.bins = _Bins([f["edges"] for f in self.features], dtype, self.offsets)

    def values(self, array: Any) -> np.ndarray:
        """This group's values for one request's tensor: [rows, features] (classes: [rows])."""
        array = np.asarray(array)
        rows = array.shape[0] if array.ndim else 1
        if self.kind == "columns":
            x = array.reshape(rows, -1)
            if x.shape[1] != len(self.features):
                raise ValueError(f"{self.tensor} has {x.shape[1]} columns, the profile {len(self.features)}")
            return x
        if self.kind == "rows":
            return np.stack([row_statistic(f["stat"], array, self.centroid, self.pad) for f in self.features], axis=1)
        return array.reshape(rows, -1)[:, 0] if array.ndim > 1 else array.reshape(rows)

    def slots(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind != "classes":
            return self.bins.slots(values)
        if self.strings:
            index = np.array([self.lookup.get(v if isinstance(v, str) else str(v), self.other) for v in values],
                             dtype=np.int64)
        else:
            v = values.astype(np.int64, copy=False)
            at = np.clip(np.searchsorted(self.sorted, v), 0, len(self.sorted) - 1)
            index = np.where(self.sorted[at] == v, self.sorted_slot[at], self.other)
        return (self.offsets[0] + index)[:, None], (index == self.other)[:, None]


def slot_count(feature: dict[str, Any]) -> int:
    """Slots of one feature: below, its bins, above; or one per class and one for the rest."""
    return len(feature["classes"]) + 1 if "classes" in feature else len(feature["edges"]) + 1


def outside_slots(feature: dict[str, Any]) -> list[int]:
    """The slots (relative to the feature's first) that lie outside the profile's range."""
    n = slot_count(feature)
    return [n - 1] if "classes" in feature else [0, n - 1]


class Profile:
    """A drift profile as loaded from JSON: counts the slots of requests' tensors."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} {FORMAT}")
        self.data = data
        self.id: str = data["id"]
        self.groups: list[_Group] = []
        offset = 0
        for spec in data["groups"]:
            group = _Group(spec, offset)
            self.groups.append(group)
            offset += group.size
        self.slots = offset

    @classmethod
    def load(cls, path: str) -> Profile:
        with open(path, encoding="utf-8") as file:
            return cls(json.load(file))

    def count(self, requests: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[int, int, np.ndarray]:
        """(rows, rows with an input outside the profile's range, counts per slot) of
        requests given as (inputs by name, outputs by name). A request that lacks a tensor
        or whose tensors do not fit the profile is left out whole.

        Fast path: each tensor of all requests joined, then binned at once; when they cannot
        be joined (sequences of other lengths) or one does not fit, request by request."""
        try:
            values = [g.values(np.concatenate([np.asarray(self._tensor(g, r)) for r in requests]))
                      for g in self.groups]
        except (KeyError, ValueError, TypeError, IndexError):
            values = None
        if values is None or len({len(v) for v in values}) != 1:
            values = self._per_request(requests)
        if values is None:
            return 0, 0, np.zeros(self.slots, dtype=np.int64)
        return self._bin(values)

    @staticmethod
    def _tensor(group: _Group, request: tuple[dict[str, Any], dict[str, Any]]) -> Any:
        return request[0 if group.source == "input" else 1][group.tensor]

    def _per_request(self, requests: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[np.ndarray] | None:
        per_group: list[list[np.ndarray]] = [[] for _ in self.groups]
        for request in requests:
            try:
                values = [g.values(self._tensor(g, request)) for g in self.groups]
            except (KeyError, ValueError, TypeError, IndexError):
                continue
            if len({len(v) for v in values}) != 1:
                continue
            for kept, v in zip(per_group, values):
                kept.append(v)
        if not per_group or not per_group[0]:
            return None
        return [np.concatenate(kept) for kept in per_group]

    def _bin(self, values: list[np.ndarray]) -> tuple[int, int, np.ndarray]:
        rows = len(values[0])
        counts = np.zeros(self.slots, dtype=np.int64)
        outside = np.zeros(rows, dtype=bool)
        for group, v in zip(self.groups, values):
            slots, out = group.slots(v)
            counts += np.bincount(slots.ravel(), minlength=self.slots)
            if group.source == "input":
                outside |= out.any(axis=1)
        return rows, int(np.count_nonzero(outside)), counts


class DriftMeter:
    """The served model's side: requests in (by reference), summed slot counts out.

    Thread-safe. `take` returns the counts since the last `take` as the agent's datagram
    field ({"profile", "rows", "outside", "counts"}), or None when nothing was added or
    the last was less than `interval_s` ago; `put_back` returns a taken value that could
    not be sent, and `send_now` makes the next `take` ignore the interval (the end of a
    Lambda invocation). `max_per_s` None bins every request."""

    def __init__(self, profile: Profile, outputs: Sequence[str], max_per_s: int | None = MAX_BINNED_PER_S,
                 interval_s: float = TAKE_INTERVAL_S, clock: Any = time.monotonic) -> None:
        self.profile = profile
        self.output_names = list(outputs)
        self.max_per_s, self.interval_s, self._clock = max_per_s, interval_s, clock
        self.seen = self.kept = 0  # requests added, and those kept for binning
        self._keep, self._second_first, self._second_end, self._second_kept = 1.0, 0, 0.0, 0
        self._uniform: list[float] = []  # from os.urandom: numpy.random would add 30 modules to a Lambda's import
        self._last_take, self._now = 0.0, False
        self._lock = threading.Lock()
        self._pending: list[tuple[dict[str, Any], list]] = []
        self._pending_bytes = 0
        self._rows = self._outside = 0
        self._counts = np.zeros(profile.slots, dtype=np.int64)

    def add(self, inputs: dict[str, Any], outputs: list) -> None:
        """Keep a reference to one request's model inputs and outputs (binned at `take`),
        or, beyond `max_per_s` requests a second, a random sample of them."""
        self.seen += 1
        if self.max_per_s is not None:
            now = self._clock()
            if now >= self._second_end:  # the share to keep next second, from this one's rate
                self._keep = min(1.0, self.max_per_s / max(1, self.seen - self._second_first))
                self._second_first, self._second_end, self._second_kept = self.seen, now + 1.0, 0
            if self._keep < 1.0:
                if not self._uniform:
                    self._uniform = (np.frombuffer(os.urandom(8192), dtype=np.uint64) / 2.0**64).tolist()
                if self._uniform.pop() >= self._keep:
                    return
            if self._second_kept >= self.max_per_s:  # a burst within the second: the rest waits
                return
            self._second_kept += 1
        self.kept += 1
        size = sum(getattr(a, "nbytes", 0) for a in inputs.values())
        with self._lock:
            self._pending.append((inputs, outputs))
            self._pending_bytes += size
            full = len(self._pending) >= MAX_PENDING_REQUESTS or self._pending_bytes >= MAX_PENDING_BYTES
        if full:  # no client is taking (yet): bin now, so that memory stays bounded
            self._bin_pending()

    def _bin_pending(self) -> None:
        with self._lock:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        names = self.output_names
        rows, outside, counts = self.profile.count(
            [(inputs, dict(zip(names, outputs))) for inputs, outputs in pending])
        with self._lock:
            self._rows += rows
            self._outside += outside
            self._counts += counts

    def waiting(self) -> bool:
        """Whether counts wait for a datagram (the client's lingerer then sends one, so the
        last requests before a quiet spell are not held back until the next request)."""
        return bool(self._pending) or self._rows > 0

    def send_now(self) -> None:
        self._now = True

    def take(self) -> dict[str, Any] | None:
        now = self._clock()
        if not self._now and now - self._last_take < self.interval_s:
            return None
        self._now, self._last_take = False, now
        self._bin_pending()
        with self._lock:
            if not self._rows:
                return None
            taken = {"profile": self.profile.id, "rows": self._rows, "outside": self._outside,
                     "counts": self._counts.tolist()}
            self._rows = self._outside = 0
            self._counts = np.zeros(self.profile.slots, dtype=np.int64)
        return taken

    def put_back(self, taken: dict[str, Any]) -> None:
        self._now = True  # they wait for the next datagram, whenever it goes
        with self._lock:
            self._rows += taken["rows"]
            self._outside += taken["outside"]
            self._counts += np.asarray(taken["counts"], dtype=np.int64)


def load_meter(path: str, outputs: Sequence[str]) -> DriftMeter | None:
    """The meter for the app's profile, or None (no profile, or one this runtime cannot read:
    serving goes on without drift counts)."""
    try:
        return DriftMeter(Profile.load(path), outputs)
    except (OSError, ValueError, KeyError, TypeError):
        return None
