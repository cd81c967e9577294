"""Run candidates: their outputs on the gate data, and their latency on the target's provider.

Latency is timed round-robin (one run of each candidate in turn, many rounds), so that
load from anything else on the machine falls on every candidate alike; p50 and p95 are
taken per candidate. Ratios against float from the same run are what the report trusts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..pinned_runtime import CPU, for_target
from ..runtime.values import as_array
from ..targets import Target
from .data import EvalData


@dataclass(frozen=True)
class Latency:
    batch: int
    p50_ms: float
    p95_ms: float


def target_providers(target: Target, model: Path) -> tuple[list[str] | None, str]:
    """The target's execution providers when a session of `model` in the target's own runtime
    really gets the first of them here; else None and why not. onnxruntime lists a provider it
    was built with whether or not it loads, and falls back to the CPU in silence: only the
    session's own providers tell."""
    wanted = list(target.runtime.execution_providers)
    if wanted[0] == CPU[0]:
        return wanted, ""
    runtime = for_target(target)
    if wanted[0] not in runtime.available_providers():
        return None, f"{runtime} on this host has no {wanted[0]}"
    got = session(model, target, wanted).get_providers()[0]
    if got == wanted[0]:
        return wanted, ""
    return None, f"{wanted[0]} did not load on this host ({runtime} ran the session on {got})"


def session(path: Path, target: Target, providers: list[str] | None = None, *, as_recipe: bool = False):
    """A session in the onnxruntime the target pins (see mlpack.pinned_runtime), made by the
    serving runtime's own `open_session` with the target's settings (threads, arena, graph
    level, fusions left out), on `providers`: by default the CPU, which every host has. Its
    threads stop spinning at the end of each run (`force_spinning_stop`): see `latencies`.

    `as_recipe`: a reference recipe's model (benchmarks), opened as its user would open it:
    the same threads and graph level, with every fusion onnxruntime has and denormals kept, so a
    ratio against it counts what the target's `disabled_optimizers` and `denormal_as_zero` buy."""
    settings = target.runtime.session_settings()
    # Candidates run in turn: each one's threads stop spinning when its run ends, so that they
    # do not slow the next candidate's run (served, a session runs alone and may spin on).
    settings["force_spinning_stop"] = True
    if as_recipe:
        settings["disabled_optimizers"] = []
        settings["denormal_as_zero"] = False
    return for_target(target).open(path, settings, providers or CPU)


def run_time_ms(sess, feed: dict[str, np.ndarray]) -> float:
    """Milliseconds of one `run`; a session in a worker process reports its own, without the pipe."""
    run_timed = getattr(sess, "run_timed", None)
    if run_timed is not None:
        return run_timed(None, feed)[1]
    t0 = time.perf_counter()
    sess.run(None, feed)
    return (time.perf_counter() - t0) * 1000


def fixed_batch(sess) -> int | None:
    """The batch size a session's inputs fix on their first axis (say 1), or None when it is free."""
    return next((i.shape[0] for i in sess.get_inputs() if i.shape and isinstance(i.shape[0], int)), None)


def timing_batches(sess, larger: int) -> list[int]:
    """The batch sizes to time: the model's fixed batch; else 1, and `larger` when every
    input's first axis is free (requests can be batched together)."""
    fixed = fixed_batch(sess)
    if fixed:
        return [fixed]
    free = all(i.shape and not isinstance(i.shape[0], int) for i in sess.get_inputs())
    return [1, larger] if free else [1]


def outputs(sess, data: EvalData, names: list[str] | None = None, batch: int | None = None) -> list[np.ndarray]:
    """The outputs (all, or `names`) for every row, run in batches the session accepts: `batch`
    rows at a time (by default `data.stream_rows()`: fewer for large rows, so memory stays
    bounded), or exactly the model's fixed batch size.

    Outputs that are not tensors become arrays (`mlpack_runtime.values.as_array`): ZipMap's
    list of {class: probability} dicts is a [rows, classes] table, columns in class order."""
    fixed = fixed_batch(sess)
    parts = [[as_array(value)[:real] for value in sess.run(names, feed)]
             for feed, real in data.feeds(fixed or batch or data.stream_rows(), exact=fixed is not None)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def latencies(
    sessions: dict[str, object],
    data: EvalData,
    batch: int,
    *,
    budget_s: float = 20.0,
    min_rounds: int = 5,
    max_rounds: int = 1000,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Latency]:
    """p50/p95 per candidate at one batch size, rounds interleaved across candidates.

    Each round runs every candidate once, in a shuffled order, so neither drift nor a
    periodic disturbance favours a position; rounds go on until the time budget is spent.
    Sessions from `session` stop their threads spinning when a run ends: left to spin
    (onnxruntime's default), they took the cores the next candidate's run needed: a PP-OCRv4
    recognizer run timed 37 ms in turn with two more sessions of the same model, 14 ms with
    them stopped, 17 ms as one session alone (`python -m benchmarks.vision --spinning`); by how
    much depended on the models beside it.
    """
    for name, sess in sessions.items():
        if fixed_batch(sess) not in (None, batch):
            raise ValueError(f"{name} takes batches of {fixed_batch(sess)} rows only, not {batch}")
    feed = data.batch(batch)
    for sess in sessions.values():  # warm up: first runs allocate and pick kernels
        sess.run(None, feed)
        sess.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    order = list(sessions.items())
    shuffle = np.random.default_rng(0).shuffle
    started = time.perf_counter()
    for round_ in range(max_rounds):
        shuffle(order)
        for name, sess in order:
            times[name].append(run_time_ms(sess, feed))
        if on_round is not None:  # e.g. a progress bar
            on_round()
        if round_ + 1 >= min_rounds and time.perf_counter() - started > budget_s:
            break
    return {
        name: Latency(batch, float(np.percentile(t, 50)), float(np.percentile(t, 95)))
        for name, t in times.items()
    }


def graph_at_load(path: Path, folder: Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """What an onnxruntime session of `path` runs once it has loaded it (its basic optimizations,
    constant folding among them, done): each node's op type and domain, in order, and then each
    initializer's data type and shape, sorted. Two models with the same are the same computation
    on tensors of the same shapes. In this process's onnxruntime: call it only where that is the
    release the target pins (`for_target(target).local`)."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    saved = folder / f"{path.stem}.at-load.onnx"
    options.optimized_model_filepath = str(saved)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                     f"{saved.name}.data")  # where the weights go when over 2 GB
    onnxruntime.InferenceSession(str(path), options, providers=CPU)
    model = onnx.load(str(saved), load_external_data=False)
    graph = [(n.op_type, n.domain, ()) for n in model.graph.node]
    graph += sorted((str(t.data_type), "", tuple(t.dims)) for t in model.graph.initializer)
    for file in (saved, folder / f"{saved.name}.data"):
        file.unlink(missing_ok=True)
    return graph
