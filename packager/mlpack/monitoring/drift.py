"""The drift profile an artifact ships (`drift/profile.json`), made at build from the
calibration data: what the agent compares production traffic with (docs/agent.md).

Only real data makes a profile: a build on synthetic inputs (no --calibration, no demo
data) writes none, says so in the report, and its agent exports no drift metrics and its
alert rules have no drift alerts. A baseline learned from the first production traffic
would call whatever arrives first normal.

Features, per model input (required tensors):
- a [rows] or [rows, columns] numeric input with a fixed width of at most MAX_COLUMNS:
  one feature per column (`pixels[12]`);
- any other numeric tensor (images, token ids, sequences): per-row statistics, `mean`
  and `std` for floats, `nonzero` (values other than the padding value: the token count
  of ids and masks) and `nonzero_mean` for integers; a tensor a tokenizer fills counts
  as a sequence whatever its width, padded with the tokenizer's value;
- strings: `chars` and `words` per row.
Per model output: the class mix of a [rows] (or [rows, 1]) integer or string output (up
to MAX_CLASSES classes, the rest as "other"); each column of a float output of at most
MAX_OUTPUT_COLUMNS columns (a regressor); the top probability (`max`) of a probability
table; else the row's L2 `norm` and, for a fixed width, its cosine to the calibration
data's mean row (`centroid_cosine`): an embedding.

Numeric features get at most `max_bins` bins (one per 20 calibration rows, at least 2)
at the data's quantiles, with a point mass (most pixels are 0) kept in a bin of its own.
The calibration counts are computed by mlpack_runtime.drift, the very code that bins
served requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..model.info import Signature, TensorSpec
from ..runtime.drift import FORMAT, VERSION, Profile, outside_slots, row_statistic, slot_count

PROFILE_FILE = "drift/profile.json"
MAX_COLUMNS = 128
MAX_OUTPUT_COLUMNS = 8
MAX_CLASSES = 64
MAX_ROWS = 10_000  # calibration rows the profile is made from at most (a fixed sample beyond)
ROWS_PER_BIN = 20
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ProfileData:
    """What the profile is made from: the calibration inputs and the shipped model's outputs
    on them, by name, and where they come from (said in the report)."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    source: str


def make_profile(data: ProfileData, signature: Signature, max_bins: int,
                 sequences: dict[str, int] | None = None) -> dict[str, Any]:
    """The profile as JSON-ready data. `sequences`: the inputs a tokenizer fills, with the
    value it pads them with."""
    sequences = sequences or {}
    rows = len(next(iter(data.inputs.values())))
    bins = max(2, min(max_bins, rows // ROWS_PER_BIN))
    groups = []
    for spec in signature.inputs:
        if spec.is_tensor and not spec.optional and spec.name in data.inputs:
            groups.append(_input_group(spec, data.inputs[spec.name], bins, sequences.get(spec.name)))
    for spec in signature.outputs:
        if spec.is_tensor and spec.name in data.outputs:
            group = _output_group(spec, np.asarray(data.outputs[spec.name]), bins)
            if group is not None:
                groups.append(group)
    profile = {"format": FORMAT, "version": VERSION, "id": "0" * 16, "rows": rows, "source": data.source,
               "groups": [g for g in groups if g["features"]]}
    _fill_references(profile, data)
    profile["id"] = profile_id(profile)
    return profile


def profile_id(profile: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of the profile without its id: the agent refuses counts of another."""
    body = {k: v for k, v in profile.items() if k != "id"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def write_profile(root: Path, profile: dict[str, Any]) -> Path:
    path = root / PROFILE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def features(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """Every feature in slot order, as the agent's configuration lists them."""
    return [{"name": f["name"], "source": g["source"], "reference": f["reference"], "outside": outside_slots(f)}
            for g in profile["groups"] for f in g["features"]]


# ---- groups -------------------------------------------------------------------------------


# A float statistic whose calibration values all lie within this (relative) spread is fixed
# by the model, not by the data: the norm of an L2-normalized embedding is 1 +- 1e-7, and
# which side of 1 a row lands on depends on the batch it ran in. Binned, it would read as
# drift on the first served request; it is left out of the profile.
FLOAT32_NOISE = 1e-5
FIXABLE_STATS = ("norm", "mean", "std", "max", "centroid_cosine")


def _input_group(spec: TensorSpec, array: np.ndarray, bins: int, pad: int | None) -> dict[str, Any]:
    name = spec.name
    if spec.is_string or array.dtype.kind in "OUS":
        return _rows(name, "input", array, ("chars", "words"), bins)
    width = spec.shape[1] if spec.shape and len(spec.shape) == 2 else None
    if array.ndim == 1 or (array.ndim == 2 and isinstance(width, int) and width <= MAX_COLUMNS and pad is None):
        return _columns(name, "input", array, bins)
    if array.dtype.kind == "f":
        return _rows(name, "input", array, ("mean", "std"), bins)
    return _rows(name, "input", array, ("nonzero", "nonzero_mean"), bins, pad=pad or 0)


def _output_group(spec: TensorSpec, array: np.ndarray, bins: int) -> dict[str, Any] | None:
    name = spec.name
    if array.ndim == 0 or len(array) == 0:
        return None
    single = array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)
    if array.dtype.kind in "iuOUSb" and single:
        return _classes(name, array.reshape(len(array)))
    if array.dtype.kind != "f":
        return None
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] <= MAX_OUTPUT_COLUMNS and not _probabilities(array)):
        return _columns(name, "output", array, bins)
    if array.ndim == 2 and _probabilities(array):
        return _rows(name, "output", array, ("max",), bins)
    if array.ndim == 2:
        centroid = array.astype(np.float64).mean(axis=0)
        return _rows(name, "output", array, ("norm", "centroid_cosine"), bins, centroid=_float32_list(centroid))
    return _rows(name, "output", array, ("norm",), bins)


def _probabilities(array: np.ndarray) -> bool:
    """Rows of shares: every value in [0, 1], each row summing to 1."""
    return bool(array.ndim == 2 and array.shape[1] > 1 and np.all((array >= 0) & (array <= 1))
                and np.allclose(array.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE))


def _columns(name: str, source: str, array: np.ndarray, bins: int) -> dict[str, Any]:
    x = array.reshape(len(array), -1)
    float32 = array.dtype == np.float32
    one = x.shape[1] == 1 and array.ndim == 1
    return {"tensor": name, "source": source, "kind": "columns", "dtype": "float32" if float32 else "float64",
            "features": [{"name": name if one else f"{name}[{j}]",
                          "edges": edges(x[:, j], bins, float32, between=source == "output")}
                         for j in range(x.shape[1])]}


def _rows(name: str, source: str, array: np.ndarray, stats: tuple[str, ...], bins: int,
          centroid: list[float] | None = None, pad: int = 0) -> dict[str, Any]:
    group: dict[str, Any] = {"tensor": name, "source": source, "kind": "rows"}
    if centroid is not None:
        group["centroid"] = centroid
    if pad:
        group["pad"] = pad
    center = np.asarray(centroid, dtype=np.float64) if centroid is not None else None
    group["features"] = []
    for stat in stats:
        values = row_statistic(stat, array, center, pad)
        if stat in FIXABLE_STATS and _fixed(values):
            continue  # the model fixes it (a normalized embedding's norm): only rounding would vary
        group["features"].append({"name": f"{name}:{stat}", "stat": stat,
                                  "edges": edges(values, bins, False, between=True)})
    return group


def _fixed(values: np.ndarray) -> bool:
    """Every value the same up to float32 rounding (which differs with the batch a row ran in)."""
    v = values[np.isfinite(values)]
    return bool(len(v)) and float(v.max() - v.min()) <= FLOAT32_NOISE * max(1.0, float(np.abs(v).max()))


def _classes(name: str, values: np.ndarray) -> dict[str, Any]:
    strings = values.dtype.kind in "OUS"
    kept, counts = np.unique(values.astype(str) if strings else values.astype(np.int64), return_counts=True)
    common = kept[np.argsort(-counts, kind="stable")[:MAX_CLASSES]]
    classes = sorted(str(c) for c in common) if strings else sorted(int(c) for c in common)
    return {"tensor": name, "source": "output", "kind": "classes", "features": [{"name": name, "classes": classes}]}


def edges(values: np.ndarray, bins: int, float32: bool, between: bool = False) -> list[float]:
    """Bin edges at the values' quantiles (min and max included); a value holding at least
    one bin's share of the rows gets a bin of its own, so a mostly-zero pixel still has
    a bin for "not zero". Float32 features get float32 edges, written in their shortest form.

    `between`, for what a model computes (outputs, per-row statistics): each inner edge sits
    halfway between the calibration values on either side of it, and the outer ones a float32
    rounding further out, so a served row that equals a calibration row up to rounding (a
    different batch, another thread count) lands in the same bin, not the next one."""
    v = np.sort(values[np.isfinite(values)].astype(np.float64))
    if not len(v):
        return [0.0, 0.0]
    cut = set(np.quantile(v, np.linspace(0, 1, bins + 1), method="inverted_cdf").tolist())
    for e in sorted(cut)[:-1]:
        mass = np.searchsorted(v, e, side="right") - np.searchsorted(v, e, side="left")
        above = np.searchsorted(v, e, side="right")
        if mass * bins >= len(v) and above < len(v):
            cut.add(float(v[above]))
    ordered = sorted(cut)
    if between:
        ordered = _between_values(ordered, v)
    if float32:
        ordered = sorted({float(np.format_float_positional(np.float32(e), unique=True)) for e in ordered})
    return ordered if len(ordered) > 1 else ordered * 2  # a constant: one bin, [v, v]


def _between_values(ordered: list[float], v: np.ndarray) -> list[float]:
    """Inner edges (each a calibration value) moved halfway down to the value below; the
    outer ones out by FLOAT32_NOISE. Every calibration row keeps its bin."""
    noise = FLOAT32_NOISE * max(1.0, float(np.abs(v[[0, -1]]).max()))
    inner = []
    for e in ordered[1:-1]:
        k = int(np.searchsorted(v, e, side="left"))  # v[k-1] < e <= v[k]
        inner.append((float(v[k - 1]) + e) / 2 if k > 0 else e)
    return [ordered[0] - noise, *inner, ordered[-1] + noise] if len(ordered) > 1 else \
        [ordered[0] - noise, ordered[0] + noise]


def _float32_list(values: np.ndarray) -> list[float]:
    return [float(np.format_float_positional(np.float32(v), unique=True)) for v in values]


def _fill_references(profile: dict[str, Any], data: ProfileData) -> None:
    """The calibration data's counts per slot, binned as the served model bins requests."""
    counter = Profile(profile)
    rows, _, counts = counter.count([(data.inputs, data.outputs)])
    if rows != profile["rows"]:
        raise ValueError(f"the profile binned {rows} of {profile['rows']} calibration rows")
    start = 0
    for group in counter.groups:
        for feature in group.features:
            end = start + slot_count(feature)
            feature["reference"] = counts[start:end].tolist()
            start = end


def describe(profile: dict[str, Any]) -> str:
    """One line: how many features of what, from what data."""
    inputs, outputs = counts(profile)
    return (f"{inputs} input and {outputs} output features from {profile['source']} "
            f"(profile {profile['id']})")


def build_profile(model: Path, signature: Signature, target: Any, data_path: Path | None, synthetic: bool,
                  source: str, sequences: dict[str, int] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The profile of the shipped `model` on the calibration data (the data the optimizer
    gated on, at most MAX_ROWS rows of it), or None and why there is none."""
    if data_path is None or synthetic:
        return None, "no drift profile: the build had no calibration data (pass --calibration with real inputs)"
    from ..optimize.data import load_data
    from ..optimize.measure import outputs, session

    data = load_data(data_path, signature)
    if data.rows > MAX_ROWS:
        data = data.take(np.sort(np.random.default_rng(0).choice(data.rows, MAX_ROWS, replace=False)))
    try:
        sess = session(model, target)
        names = [o.name for o in sess.get_outputs()]
        values = dict(zip(names, outputs(sess, data)))
    except Exception as exc:  # noqa: BLE001 - a model whose outputs cannot be read still ships
        return None, f"no drift profile: the model's outputs on the calibration data could not be read ({exc})"
    profile = make_profile(ProfileData(data.inputs, values, source), signature, target.drift.max_bins, sequences)
    return profile, f"drift profile: {describe(profile)}"


def sequence_pads(processing: Any) -> dict[str, int]:
    """The model inputs an artifact's tokenizer fills, with the value it pads each with."""
    text = getattr(processing, "text", None) if processing is not None else None
    if text is None:
        return {}
    pads = {"ids": text.pad_id, "type_ids": text.pad_type_id}
    return {name: pads.get(kind, 0) for name, kind in text.feeds.items()}


def counts(profile: dict[str, Any]) -> tuple[int, int]:
    """(input features, output features)."""
    inputs = sum(len(g["features"]) for g in profile["groups"] if g["source"] == "input")
    return inputs, sum(len(g["features"]) for g in profile["groups"]) - inputs


def drift_section(profile: dict[str, Any]) -> Any:
    from ..manifest import DriftSection

    inputs, outputs = counts(profile)
    return DriftSection(profile=PROFILE_FILE, id=profile["id"], rows=profile["rows"], data_source=profile["source"],
                        input_features=inputs, output_features=outputs)


def feature_summary(profile: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(tensor, source, what is tracked) per group, for the reports and `mlpack serve`."""
    rows = []
    for g in profile["groups"]:
        names = [f["name"] for f in g["features"]]
        if g["kind"] == "columns":
            what = f"{len(names)} column{'s' if len(names) > 1 else ''}, binned"
        elif g["kind"] == "classes":
            what = f"class mix ({len(g['features'][0]['classes'])} classes and other)"
        else:
            what = "per row: " + ", ".join(f["stat"] for f in g["features"])
        rows.append((g["tensor"], g["source"], what))
    return rows


def drift_markdown(profile: dict[str, Any] | None, note: str) -> str:
    """report.md's drift section."""
    if profile is None:
        return f"\n## Drift profile\n\n{note[0].upper()}{note[1:]}. The agent exports no drift metrics for it.\n"
    lines = ["", "## Drift profile", "", f"`{PROFILE_FILE}`: {describe(profile)}. The agent compares a sliding "
             "window of served requests with it (docs/agent.md).", "", "| tensor | source | tracked |", "|---|---|---|"]
    lines += [f"| {t} | {s} | {w} |" for t, s, w in feature_summary(profile)]
    return "\n".join(lines) + "\n"


def drift_json(profile: dict[str, Any] | None, note: str) -> dict[str, Any]:
    if profile is None:
        return {"profile": None, "note": note}
    inputs, outputs = counts(profile)
    return {"profile": PROFILE_FILE, "id": profile["id"], "rows": profile["rows"], "input_features": inputs,
            "output_features": outputs, "note": note}
