"""Lambda SnapStart hooks: what runs before the snapshot and after each restore.

With SnapStart, Lambda runs the function's init once per published version, snapshots
the memory, and starts later environments from copies of that snapshot. So:

- before the snapshot, the session answers one request on sample inputs, so that
  onnxruntime's first-run work (allocations, kernel selection) is in the snapshot rather
  than in the first request of every restored environment;
- after a restore, whatever must differ between copies is made anew: the random seeds
  (`random`, numpy's global generator), tempfile's random name sequence, and the
  telemetry client's socket (a new one, rather than the snapshot's descriptor).

The hooks are registered through AWS's `snapshot_restore_py` (part of Lambda's Python
runtimes; awslambdaric runs them when `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`).
Without that module, or without SnapStart, nothing runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from .served import ServedModel


def sample_inputs(specs: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Inputs the signature accepts: zeros (empty strings for text), free axes of size 1."""
    arrays = {}
    for spec in specs:
        shape = [d if isinstance(d, int) else 1 for d in (spec["shape"] or [1])]
        try:
            dtype = np.dtype(spec["dtype"])
        except TypeError:  # "string" and the like
            dtype = np.dtype(object)
        arrays[spec["name"]] = np.full(shape, "", dtype=object) if dtype.kind in "OUS" else np.zeros(shape, dtype)
    return arrays


def before_snapshot(model: ServedModel) -> None:
    try:
        model.session.run(None, sample_inputs(model.config.inputs))  # not a request: no telemetry
    except Exception as exc:  # a model that refuses zeros still snapshots, only colder
        print(f"mlpack: SnapStart: no warm-up inference ({type(exc).__name__}: {exc})"[:300], file=sys.stderr)
        return
    print("mlpack: SnapStart: session warmed with one inference before the snapshot", file=sys.stderr)


def after_restore(model: ServedModel) -> None:
    # Imported here, not at init: tempfile (with shutil, bz2, lzma) and random cost a cold
    # start ~10 ms that only a restore needs (benchmarks/lambda_cold_start.py measures it).
    import random
    import tempfile

    random.seed()  # from os.urandom: each restored copy draws its own numbers
    np.random.seed()
    tempfile._name_sequence = None  # noqa: SLF001 - rebuilt (and reseeded) on next use
    model.reporter.reconnect()
    print("mlpack: SnapStart: restored; random seeds, temporary names and the telemetry socket are new",
          file=sys.stderr)


def register_hooks(model: ServedModel) -> bool:
    """Register the hooks with the Lambda runtime; False where it has no hook support."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, model)
    register_after_restore(after_restore, model)
    return True
