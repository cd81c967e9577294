"""Drift profiles for tests, made without a model: digit-like rows and a fixed stand-in
classifier in numpy (labels and probabilities), so a profile has input columns, a class
mix and a top-probability feature, as the demo's has."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpack.monitoring.drift import PROFILE_FILE, ProfileData, drift_section, make_profile
from mlpack.model.info import Signature, TensorSpec
from mlpack.render.context import RenderContext

from .manifests import make_manifest

FEATURES = 16
SIGNATURE = Signature(
    inputs=[TensorSpec(name="pixels", dtype="float32", shape=["batch", FEATURES])],
    outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
             TensorSpec(name="probabilities", dtype="float32", shape=["batch", 4])],
)
_WEIGHTS = np.random.default_rng(42).standard_normal((FEATURES, 4))


def pixels(rows: int, seed: int = 0) -> np.ndarray:
    """Values in [0, 1] in steps of 1/16, mostly dark, and mostly 0 at the edges, as the digits'
    pixels (so that inverting them changes every column's distribution)."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.beta(1.0, 3.0, size=(rows, FEATURES)) * 16) / 16.0
    x[:, :3] *= rng.random((rows, 3)) < 0.1  # sparse columns: a point mass at 0
    return x.astype(np.float32)


def classify(x: np.ndarray) -> dict[str, np.ndarray]:
    """The stand-in model's outputs, by name."""
    logits = x.astype(np.float64) @ _WEIGHTS
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return {"label": p.argmax(axis=1).astype(np.int64), "probabilities": p.astype(np.float32)}


def profile(rows: int = 400, max_bins: int = 10) -> dict[str, Any]:
    x = pixels(rows)
    return make_profile(ProfileData({"pixels": x}, classify(x), f"test rows ({rows})"), SIGNATURE, max_bins)


def drift_context(target_name: str, name: str = "digits", **facts: Any) -> RenderContext:
    """A render context whose manifest has a drift profile, with the profile itself."""
    made = profile()
    manifest = make_manifest(target_name, name, drift=drift_section(made), **facts)
    assert manifest.drift.profile == PROFILE_FILE
    return RenderContext.from_manifest(manifest, made)
