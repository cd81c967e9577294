"""A model whose inputs fix the batch size gets only batches of that size: in the gate, in
calibration, in layer sensitivity, in mixed precision and in latency timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from mlpack.model.info import inspect_model
from mlpack.optimize.data import EvalData
from mlpack.optimize.measure import latencies, outputs, session, timing_batches
from mlpack.targets import load_target

from .models import fixed_batch_cnn, fixed_batch_images, linear_model, save_graph
from .optimize_models import optimize, two_layer_model


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_every_variant_runs_on_a_cnn_with_a_fixed_batch(tmp_path: Path, batch: int) -> None:
    model = fixed_batch_cnn(tmp_path / "cnn.onnx", batch=batch)
    # 64 rows: 16 calibrate and 48 gate; with a batch of 3 the 16 calibration rows end in a short batch.
    data = fixed_batch_images(tmp_path / "d.npz")
    # arm-edge lists the whole int8 family, and its "smallest" policy makes the pick independent of timing.
    result = optimize(inspect_model(model), load_target("arm-edge"), tmp_path / "work", data_path=data)

    assert not [why for _, why in result.skipped if "invalid dimensions" in why or "failed" in why]
    static = next(c for c in result.candidates if c.name == "static-int8")
    assert not static.passed  # conv1's outlier weight zeroes its real weights in int8
    assert result.sensitive_layers[0][0] == "conv1"  # its effect measured at the model's batch size
    mixed = next(c for c in result.candidates if c.name == "mixed-int8")
    assert mixed.passed and "conv1" in mixed.recipe and "as static-int8" in mixed.recipe
    stored = next(c for c in result.candidates if c.name == "stored-int8")
    assert stored.passed and "K1 (" in stored.recipe  # conv1's weight kept float, by its own measurement
    # Both keep conv1 float and so tie on size: the tie goes to the more accurate, then the first listed.
    assert result.chosen in (mixed, stored)
    # Timed only at the batch size the model accepts, never at latency_batch.
    assert all(list(c.latency) == [batch] for c in result.candidates)
    assert f"batch_{batch}" in result.to_json()["candidates"][0]["latency_ms"]


def test_outputs_come_back_for_every_row_when_rows_do_not_fill_the_last_fixed_batch(tmp_path: Path) -> None:
    sess = session(fixed_batch_cnn(tmp_path / "cnn.onnx", batch=4), load_target("x86-cpu"))
    images = np.random.default_rng(1).random((10, 3, 16, 16)).astype(np.float32)
    got = outputs(sess, EvalData({"image": images}, None, "test", False))[0]
    one_by_one = [outputs(sess, EvalData({"image": np.repeat(images[i : i + 1], 4, axis=0)}, None, "t", False))[0][0]
                  for i in range(10)]
    assert got.shape == (10, 16)
    np.testing.assert_allclose(got, np.stack(one_by_one), rtol=1e-5)


def test_feeds_fill_a_short_last_batch_only_for_a_fixed_batch() -> None:
    data = EvalData({"x": np.arange(5)[:, None]}, None, "test", False)
    assert [(f["x"][:, 0].tolist(), real) for f, real in data.feeds(2, exact=True)] == [
        ([0, 1], 2), ([2, 3], 2), ([4, 0], 1)]
    assert [(f["x"][:, 0].tolist(), real) for f, real in data.feeds(2)] == [([0, 1], 2), ([2, 3], 2), ([4], 1)]


def test_timing_uses_only_batch_sizes_the_model_accepts(tmp_path: Path) -> None:
    target = load_target("x86-cpu")
    fixed = session(fixed_batch_cnn(tmp_path / "cnn.onnx", batch=1), target)
    free = session(two_layer_model(tmp_path / "m.onnx"), target)
    assert timing_batches(fixed, 32) == [1]
    assert timing_batches(free, 32) == [1, 32]
    images = EvalData({"image": np.zeros((4, 3, 16, 16), np.float32)}, None, "t", False)
    with pytest.raises(ValueError, match="takes batches of 1 rows only, not 8"):
        latencies({"cnn": fixed}, images, 8, budget_s=0.01)
    assert latencies({"cnn": fixed}, images, 1, budget_s=0.01)["cnn"].p50_ms > 0


def test_a_fixed_batch_model_is_calibrated_in_its_batch_size(tmp_path: Path) -> None:
    from mlpack.optimize.passes import static_int8

    model = fixed_batch_cnn(tmp_path / "cnn.onnx", batch=3)
    images = np.random.default_rng(0).random((7, 3, 16, 16)).astype(np.float32)
    out = static_int8(model, tmp_path / "q.onnx", EvalData({"image": images}, None, "t", False), fixed_batch=3)
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    linear = linear_model(tmp_path / "lin.onnx")  # a free batch: one row at a time, as before
    out = static_int8(linear, tmp_path / "lq.onnx", EvalData({"x": np.ones((3, 4), np.float32)}, None, "t", False))
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}


class _CountingSession:
    """A stand-in session with a free batch axis that records how many rows each run gets."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def get_inputs(self):
        return [type("Input", (), {"shape": ["batch", 3, "height", "width"]})()]

    def run(self, names, feed):
        self.batches.append(len(feed["x"]))
        return [feed["x"].reshape(len(feed["x"]), -1)[:, :2]]


def test_large_rows_stream_in_small_batches_so_memory_stays_bounded() -> None:
    pages = EvalData({"x": np.zeros((20, 3, 320, 480), np.float32)}, None, "t", False)  # 1.8 MB a row
    assert pages.stream_rows() == 4  # 8 MiB of inputs at once
    sess = _CountingSession()
    assert outputs(sess, pages)[0].shape == (20, 2) and sess.batches == [4, 4, 4, 4, 4]
    assert EvalData({"x": np.zeros((100, 64), np.float32)}, None, "t", False).stream_rows() == 64


def test_latency_is_timed_at_a_batch_whose_inputs_fit_what_the_gate_streams(tmp_path: Path) -> None:
    wide = tmp_path / "wide.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1])], "wide",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 600_000])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 1])])
    save_graph(graph, wide)
    target = load_target("x86-cpu")
    target = target.model_copy(update={"optimize": target.optimize.model_copy(update={"variants": []})})
    result = optimize(inspect_model(wide), target, tmp_path / "work")
    assert {b for c in result.candidates for b in c.latency} == {1, 3}  # 2.4 MB a row: 3 rows, not 32
    assert any("timed at batch 1 and 3, not at the target's 32" in note for note in result.notes)
