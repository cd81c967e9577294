"""The optimizer: variants are made per target, gated against float on data, and picked
by the target's policy; float is kept, with a reason, when nothing smaller passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlpack.model.info import inspect_model
from mlpack.optimize import GateSettings, make_candidates, time_and_pick
from mlpack.optimize.gate import compare
from mlpack.optimize.measure import Latency
from mlpack.optimize.report import Candidate
from mlpack.optimize.select import pick
from mlpack.targets import load_target

from .demo_data import held_out_demo_rows
from .optimize_models import (
    conv_model, embedding_model, optimize, two_conv_model, two_layer_data, two_layer_model, with_variants,
)



def names(result) -> list[str]:
    return [c.name for c in result.candidates]


def accuracy(model: Path, pixels: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a classifier file, by plain onnxruntime (none of mlpack's code)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(["label"], {session.get_inputs()[0].name: pixels})[0]
    return float(np.mean(predicted == labels))


# ---- the pipeline on real models ------------------------------------------------------


@pytest.mark.slow
def test_demo_classifier_keeps_accuracy_within_half_a_point_and_the_report_says_so(tmp_path: Path) -> None:
    from mlpack.model.demo import demo_model

    model, data = demo_model()
    result = optimize(inspect_model(model), load_target("aws-lambda"), tmp_path, data_path=data)
    # Lambda: the smallest that passes. Sizes within 10% of each other, or within 256 KiB (the
    # whole model is 200 KB), tie, and the tie goes to the more accurate: an int8 that agrees
    # with float on every gate row, not the smaller pruned-int8 (tests/test_pruning.py) that
    # changes a few.
    assert result.chosen.name in ("stored-int8", "dynamic-int8", "dynamic-int8-per-tensor", "smooth-int8")
    assert result.chosen.size_bytes < 0.35 * result.candidates[0].size_bytes
    # Recomputed with plain onnxruntime on the held-out rows, not read from the gate: the
    # shipped model loses at most half a point against float, and the gate said so.
    pixels, labels = held_out_demo_rows()
    float_accuracy, shipped_accuracy = (accuracy(path, pixels, labels) for path in (model, result.chosen.path))
    assert len(labels) > 300 and float_accuracy > 0.9
    assert float_accuracy - shipped_accuracy <= 0.005
    assert result.chosen.metrics["accuracy_drop"] == pytest.approx(float_accuracy - shipped_accuracy, abs=1e-9)
    assert "within the gate's 0.5 points" in result.to_markdown()
    assert "validation.npz" in result.data_source
    assert result.chosen.path.parent == tmp_path and result.chosen.path.suffix == ".onnx"


def test_a_model_that_quantization_breaks_keeps_float_with_a_reason(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx", outliers=("first", "second"))
    data = two_layer_data(tmp_path / "d.npz")

    result = optimize(inspect_model(model), load_target("x86-cpu"), tmp_path / "work", data_path=data)
    assert result.chosen.name in ("float", "float-optimized")
    dynamic = next(c for c in result.candidates if c.name == "dynamic-int8")
    assert not dynamic.passed
    assert "cosine" in dynamic.reason
    assert "dynamic-int8" in result.why and "failed the accuracy gate" in result.why
    assert "FAIL" in result.table() and "dynamic-int8 failed the gate" in result.table()


@pytest.mark.slow
def test_mixed_precision_keeps_the_measured_worst_layer_in_float_until_the_gate_passes(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx", outliers=("first",))
    data = two_layer_data(tmp_path / "d.npz")
    target = with_variants("x86-cpu", "dynamic-int8", "mixed-int8")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=data)
    assert result.sensitive_layers[0][0] == "first"  # found by measurement, not by name
    assert not next(c for c in result.candidates if c.name == "dynamic-int8").passed
    mixed = next(c for c in result.candidates if c.name == "mixed-int8")
    assert mixed.passed and "first" in mixed.recipe
    assert mixed.size_bytes < result.candidates[0].size_bytes
    # The layer left in int8 really is quantized in the shipped file.
    ops = {n.op_type for n in onnx.load(str(mixed.path)).graph.node}
    assert "MatMulInteger" in ops and "MatMul" in ops


def test_smoothing_moves_activation_outliers_into_the_weights_and_is_more_accurate(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((96, 64)).astype(np.float32)
    x[:, :4] *= 300.0  # a few loud input channels, as after LayerNorm in transformers
    np.savez(tmp_path / "d.npz", x=x)
    target = with_variants("x86-cpu", "dynamic-int8", "smooth-int8")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=tmp_path / "d.npz")
    dynamic = next(c for c in result.candidates if c.name == "dynamic-int8")
    smooth = next(c for c in result.candidates if c.name == "smooth-int8")
    assert smooth.metrics["y.cosine_mean"] > dynamic.metrics["y.cosine_mean"]
    assert 1 - smooth.metrics["y.cosine_min"] < 0.5 * (1 - dynamic.metrics["y.cosine_min"])
    assert abs(smooth.size_bytes - dynamic.size_bytes) < 0.1 * dynamic.size_bytes  # one scale per channel
    assert "Mul" in {n.op_type for n in onnx.load(str(smooth.path)).graph.node}


def _smoothed_ops_and_outputs(model: Path, tmp_path: Path, tensors: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    import onnxruntime as ort

    from mlpack.optimize.smooth import Smoothing, apply

    widths = {"x": 64, "r": 256}
    scales = {t: np.random.default_rng(2).uniform(1.0, 50.0, widths[t]).astype(np.float32) for t in tensors}
    smoothed = apply(model, tmp_path / "smoothed.onnx", [Smoothing(t, 0.5, 0.0, 0.0, scales[t]) for t in tensors])
    x = np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    return [n.op_type for n in onnx.load(str(smoothed)).graph.node], run(model), run(smoothed)


def test_smoothing_after_a_weight_matmul_and_relu_folds_into_that_weight_and_a_graph_input_gets_a_mul(
        tmp_path: Path) -> None:
    ops, before, after = _smoothed_ops_and_outputs(two_layer_model(tmp_path / "m.onnx"), tmp_path, ["x", "r"])
    assert ops == ["Mul", "MatMul", "Relu", "MatMul"]  # r's division went into W1's columns: relu(h) / s = relu(h / s)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)


def test_smoothing_a_tensor_something_else_reads_too_keeps_its_mul(tmp_path: Path) -> None:
    model = onnx.load(str(two_layer_model(tmp_path / "m.onnx")))
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", 256]))  # a second reader
    onnx.save(model, str(tmp_path / "two_outputs.onnx"))
    ops, before, after = _smoothed_ops_and_outputs(tmp_path / "two_outputs.onnx", tmp_path, ["r"])
    assert ops == ["MatMul", "Relu", "Mul", "MatMul"]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)


def test_mixed_precision_on_a_convolutional_model_keeps_the_broken_conv_in_float(tmp_path: Path) -> None:
    model = two_conv_model(tmp_path / "cnn.onnx")
    images = np.random.default_rng(0).random((64, 3, 16, 16)).astype(np.float32)
    images[:, 0] = 0.0
    np.savez(tmp_path / "d.npz", image=images)
    target = with_variants("arm-edge", "static-int8", "mixed-int8")
    result = optimize(inspect_model(model), target, tmp_path / "work", data_path=tmp_path / "d.npz")
    assert not next(c for c in result.candidates if c.name == "static-int8").passed
    assert result.sensitive_layers[0][0] == "conv1"
    mixed = next(c for c in result.candidates if c.name == "mixed-int8")
    assert mixed.passed and "as static-int8" in mixed.recipe and "conv1" in mixed.recipe
    assert result.chosen is mixed


def test_without_real_data_int8_that_passes_on_synthetic_inputs_is_held_back_and_float_ships(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    result = optimize(inspect_model(model), load_target("arm-edge"), tmp_path / "work")
    assert result.data_source.startswith("synthetic inputs")
    dynamic = next(c for c in result.candidates if c.name == "dynamic-int8")
    assert dynamic.passed and dynamic.held  # it passed, on no evidence about real data
    assert result.chosen.name in ("float", "float-optimized")
    assert ("stored-int8, dynamic-int8, dynamic-int8-per-tensor, smooth-int8, pruned, pruned-int8 held back: passed on "
            "synthetic inputs only") in result.why
    # One line says why and how to get int8, and never calls the synthetic rows calibration data.
    assert result.headline.startswith("int8 held back: stored-int8, dynamic-int8, dynamic-int8-per-tensor, smooth-int8, "
                                      "pruned, pruned-int8 passed the gate on synthetic inputs")
    assert "pass --calibration FILE.npz with real inputs" in result.headline and "\n" not in result.headline
    assert result.headline in result.table() and "held" in result.table()
    assert "calibration rows" not in result.to_markdown()
    assert result.to_json()["candidates"][2]["held_back"].startswith("passed the gate on synthetic inputs only")


def test_the_user_may_allow_int8_on_synthetic_inputs_and_the_report_says_so(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    result = optimize(inspect_model(model), load_target("arm-edge"), tmp_path / "work",
                      gate=GateSettings(synthetic="allow"))
    assert result.chosen.name in ("stored-int8", "dynamic-int8", "dynamic-int8-per-tensor", "smooth-int8")
    assert not result.chosen.held
    assert result.headline.startswith(f"{result.chosen.name} ships on synthetic evidence (--gate synthetic=allow)")
    assert "ships on that evidence alone, as --gate synthetic=allow asked" in result.to_markdown()


def test_static_int8_is_tried_for_convolutions_and_skipped_otherwise(tmp_path: Path) -> None:
    model = conv_model(tmp_path / "cnn.onnx")
    images = np.random.default_rng(0).random((64, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=images)
    result = optimize(inspect_model(model), load_target("x86-cpu"), tmp_path / "work",
                            data_path=tmp_path / "d.npz")
    static = next(c for c in result.candidates if c.name == "static-int8")
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(static.path)).graph.node}
    assert "calibrated on 16 real rows" in static.recipe

    plain = optimize(inspect_model(two_layer_model(tmp_path / "m.onnx")), load_target("x86-cpu"),
                           tmp_path / "work2")
    assert "static-int8" not in names(plain)
    assert any(name == "static-int8" and "no convolutions" in why for name, why in plain.skipped)


def test_dynamic_int8_leaves_convolutions_float_and_skips_a_model_of_convolutions_only(tmp_path: Path) -> None:
    # onnxruntime runs a dynamically quantized Conv as ConvInteger, slower than the float Conv.
    images = np.random.default_rng(0).random((64, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", image=images)
    target = with_variants("x86-cpu", "dynamic-int8")
    mixed = make_candidates(inspect_model(conv_model(tmp_path / "cnn.onnx")), target, tmp_path / "work",
                            data_path=tmp_path / "d.npz")
    dynamic = next(c for c in mixed.candidates if c.name == "dynamic-int8")
    ops = {n.op_type for n in onnx.load(str(dynamic.path)).graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops and "ConvInteger" not in ops

    convs = make_candidates(inspect_model(two_conv_model(tmp_path / "convs.onnx")), target, tmp_path / "work2",
                            data_path=tmp_path / "d.npz")
    assert "dynamic-int8" not in {c.name for c in convs.candidates}
    assert "ConvInteger" in dict(convs.skipped)["dynamic-int8"]


def test_compact_stores_embedding_tables_in_four_bits(tmp_path: Path) -> None:
    # 16384 rows: 4-bit saves more than the 256 KiB under which "smallest" calls sizes a tie
    model = embedding_model(tmp_path / "emb.onnx", rows=16384)
    ids = np.random.default_rng(0).integers(0, 16384, size=(64, 12)).astype(np.int64)
    np.savez(tmp_path / "d.npz", ids=ids)
    result = optimize(inspect_model(model), load_target("aws-lambda"), tmp_path / "work",
                            data_path=tmp_path / "d.npz")
    compact = next(c for c in result.candidates if c.name == "compact-int8")
    dynamic = next(c for c in result.candidates if c.name == "dynamic-int8")
    assert compact.passed and compact.size_bytes < 0.7 * dynamic.size_bytes
    assert "GatherBlockQuantized" in {n.op_type for n in onnx.load(str(compact.path)).graph.node}
    assert result.chosen.name == "compact-int8"


def test_cuda_target_on_a_cpu_host_makes_fp16_and_marks_latency_unmeasured(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA: latency is measured on the target here")
    model = two_layer_model(tmp_path / "m.onnx")
    result = optimize(inspect_model(model), load_target("cuda-gpu"), tmp_path / "work")
    fp16 = next(c for c in result.candidates if c.name == "fp16")
    assert not fp16.latency and "not measured on target" in result.latency_note
    assert "not measured on target" in result.table()
    signature = inspect_model(fp16.path).signature
    assert [t.dtype for t in signature.inputs + signature.outputs] == ["float32", "float32"]
    assert result.chosen.name == "fp16" and not result.headline  # fp16 needs no real data to ship


def test_candidates_are_pruned_and_saved_self_contained(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    proto = onnx.load(str(model))
    proto.graph.initializer.append(numpy_helper.from_array(np.ones((100, 100), np.float32), "unused"))
    proto.graph.node.append(helper.make_node("Relu", ["h"], ["dead"], name="dead"))
    onnx.save(proto, str(model))
    result = optimize(inspect_model(model), load_target("x86-cpu"), tmp_path / "work")
    pruned = onnx.load(str(next(c for c in result.candidates if c.name == "float-optimized").path))
    assert "unused" not in {t.name for t in pruned.graph.initializer}
    assert "dead" not in {n.name for n in pruned.graph.node}
    for c in result.candidates:
        assert c.path.is_file() and c.size_bytes == c.path.stat().st_size
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.load(str(c.path)).graph.initializer)
    report = json.loads(json.dumps(result.to_json()))
    assert report["chosen"] == result.chosen.name and len(report["candidates"]) == len(result.candidates)
    assert report["candidates"][0]["latency_ms"]["batch_1"]["p50"] > 0


# ---- the gate ---------------------------------------------------------------------------


def test_gate_passes_identical_embeddings_and_fails_degraded_ones() -> None:
    ref = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    assert compare([ref], [ref.copy()], ["emb"], GateSettings()).passed
    noisy = ref + np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32) * 0.3
    verdict = compare([ref], [noisy], ["emb"], GateSettings())
    assert not verdict.passed and "mean cosine" in verdict.reason
    one_bad = ref.copy()
    one_bad[7] = -one_bad[7]  # a single flipped row: the mean may pass, the minimum must not
    verdict = compare([ref], [one_bad], ["emb"], GateSettings(min_cosine_mean=0.9))
    assert not verdict.passed and "min cosine" in verdict.reason


def test_gate_checks_top1_agreement_and_accuracy_drop_for_classifiers() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=200).astype(np.float32)
    labels = probs.argmax(axis=1)
    flipped = probs.copy()
    flipped[:4] = np.roll(flipped[:4], 1, axis=1)  # 4 of 200 rows change their top class
    verdict = compare([probs], [flipped], ["probabilities"], GateSettings(), labels)
    assert not verdict.passed
    assert verdict.metrics["probabilities.top1_agreement"] == pytest.approx(0.98)
    assert verdict.metrics["accuracy_drop"] == pytest.approx(0.02)
    assert "top-1 agrees on 98.00%" in verdict.reason and "drop of 2.00 points" in verdict.reason
    loose = GateSettings(min_top1_agreement=0.95, max_accuracy_drop=0.03)
    assert compare([probs], [flipped], ["probabilities"], loose, labels).passed


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def test_a_sequence_of_class_probabilities_agrees_only_when_every_position_does() -> None:
    # [rows, positions, classes], as a CTC text recognizer answers: 100 lines of 40 steps.
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((100, 40, 30)) * 4
    reference = _softmax(logits)
    got = reference.copy()
    # One position changed on each of two lines: 99.95% of positions agree, but two lines now
    # read differently, and the gate counts lines (98% against 99%).
    for row in (3, 7):
        first, second = np.argsort(logits[row, 10])[[-1, -2]]
        got[row, 10, [first, second]] = got[row, 10, [second, first]]
    verdict = compare([reference], [got], ["softmax"], GateSettings())
    assert not verdict.passed
    assert verdict.metrics["softmax.sequence_agreement"] == pytest.approx(0.98)
    assert verdict.metrics["softmax.position_agreement"] == pytest.approx(1 - 2 / 4000)
    assert "98.00% of 100 rows have float's top class at every position" in verdict.reason
    candidate = Candidate("int8", Path("int8.onnx"), 1, metrics=verdict.metrics)
    assert candidate.accuracy_text() == "same at every position 98.00% (positions 99.95%)"
    # Read as one flat vector per line (what the gate did before), the same change looks harmless.
    flat = compare([reference], [got], ["softmax"], GateSettings(task="embedding"))
    assert flat.passed and flat.metrics["softmax.cosine_min"] > 0.95
    # A position where float's top two are inside numeric noise does not decide the line.
    tied = logits.copy()
    first, second = np.argsort(tied[3, 10])[[-1, -2]]
    tied[3, 10, first] = tied[3, 10, second] + 1e-6
    tied_reference = _softmax(tied)
    tied_got = tied_reference.copy()
    tied_got[3, 10, [first, second]] = tied_got[3, 10, [second, first]]
    verdict = compare([tied_reference], [tied_got], ["softmax"], GateSettings())
    assert verdict.passed and verdict.metrics["softmax.near_tie_positions"] >= 1


def test_a_ctc_output_read_as_text_agrees_when_the_text_does() -> None:
    # --gate task=ctc: 100 lines of 40 steps over 30 classes, class 0 the blank.
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((100, 40, 30))
    text = rng.integers(1, 30, (100, 40))
    text[:, 1::2] = 0  # a character, a blank, a character...
    text[:, 2] = np.where(text[:, 2] == text[:, 0], text[:, 0] % 29 + 1, text[:, 2])  # no double first letter
    np.put_along_axis(logits, text[..., None], 12.0, axis=-1)
    reference = _softmax(logits)
    # Where a character ends a step later (its blank after it becomes the character again), the
    # text is the same: every line of a CTC recognizer in int8 differs so, and reads the same.
    shifted = logits.copy()
    for row in range(100):
        shifted[row, 1, text[row, 0]] = 13.0
    got = _softmax(shifted)
    ctc = GateSettings(task="ctc")
    verdict = compare([reference], [got], ["softmax"], ctc)
    assert verdict.passed and verdict.metrics["softmax.text_agreement"] == 1.0
    assert verdict.metrics["softmax.position_agreement"] == pytest.approx(39 / 40)
    assert not compare([reference], [got], ["softmax"], GateSettings()).passed  # every position: 0 rows agree
    # A character read as another one changes the text: two lines of 100 fail the 99% gate.
    changed = got.copy()
    for row in (3, 7):
        changed[row, 4] = changed[row, 4, ::-1]
    verdict = compare([reference], [changed], ["softmax"], ctc)
    assert not verdict.passed and verdict.metrics["softmax.text_agreement"] == pytest.approx(0.98)
    assert "98.00% of 100 rows read the same text as float (CTC)" in verdict.reason
    candidate = Candidate("int8", Path("int8.onnx"), 1, metrics=verdict.metrics)
    assert candidate.accuracy_text().startswith("same CTC text 98.00% (positions ")


def test_rows_where_float_is_a_near_tie_do_not_decide_top1_agreement() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((48, 10)).astype(np.float32) * 3
    # Row 5: float's top two logits differ by 1e-5 of the row's range: a coin flip for any variant.
    top = logits[5].argmax()
    second = np.argsort(logits[5])[-2]
    logits[5, top] = logits[5, second] + 1e-5 * float(np.ptp(logits[5]))
    flipped = logits.copy()
    flipped[5, [top, second]] = flipped[5, [second, top]]  # the variant answers the runner-up there
    verdict = compare([logits], [flipped], ["logits"], GateSettings())
    assert verdict.passed
    assert verdict.metrics["logits.top1_agreement"] == 1.0 and verdict.metrics["logits.near_ties"] == 1
    # Without the rule, that one flip is 97.92% against a 99% gate.
    strict = compare([logits], [flipped], ["logits"], GateSettings(near_tie=0))
    assert not strict.passed and "top-1 agrees on 97.92% of rows" in strict.reason
    # A flip on a row float decides clearly still counts, and the reason says what was set aside.
    first, runner_up = np.argsort(logits[0])[[-1, -2]]
    flipped[0, [first, runner_up]] = flipped[0, [runner_up, first]]
    verdict = compare([logits], [flipped], ["logits"], GateSettings())
    assert not verdict.passed
    assert "top-1 agrees on 97.87% of the 47 rows that are not near-ties (1 set aside)" in verdict.reason
    candidate = Candidate("int8", Path("int8.onnx"), 1, metrics=verdict.metrics)
    assert "top-1 agree 97.87% (1 near-ties set aside)" in candidate.accuracy_text()


def test_near_ties_of_the_probabilities_also_set_aside_the_label_output() -> None:
    probs = np.tile(np.array([[0.7, 0.2, 0.1]], np.float32), (40, 1))
    probs[3] = [0.45, 0.45, 0.1]  # an exact tie in float
    labels = probs.argmax(axis=1).astype(np.int64)
    got_labels = labels.copy()
    got_labels[3] = 1
    verdict = compare([labels, probs], [got_labels, probs.copy()], ["label", "probabilities"], GateSettings())
    assert verdict.passed and verdict.metrics["label.near_ties"] == 1 and verdict.metrics["label.agreement"] == 1.0


def test_gate_reads_small_outputs_as_regression() -> None:
    ref = np.linspace(0, 10, 40, dtype=np.float32).reshape(40, 1)
    assert compare([ref], [ref + 0.01], ["price"], GateSettings()).passed
    verdict = compare([ref], [ref + 1.0], ["price"], GateSettings())
    assert not verdict.passed and "spread" in verdict.reason


# ---- the policy -------------------------------------------------------------------------


def _cand(name: str, size: int, ms: float, quality: float = 1.0, passed: bool = True) -> Candidate:
    return Candidate(name, Path(f"{name}.onnx"), size, passed=passed, quality=quality,
                     latency={1: Latency(1, ms, ms)})


def test_fastest_policy_picks_the_fastest_passing_and_ties_go_to_accuracy() -> None:
    cands = [_cand("float", 100, 10.0), _cand("a", 30, 5.0, 0.990), _cand("b", 25, 5.2, 0.995),
             _cand("c", 20, 2.0, 0.5, passed=False)]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "b" and "within 10% of a" in why


def test_latency_differences_no_request_could_notice_are_ties() -> None:
    # "other" is 3x faster than float and int8 1.5x: far apart in ratio, but 0.01 ms apart.
    cands = [_cand("float", 200, 0.030), _cand("int8", 60, 0.020, 1.0), _cand("other", 50, 0.010, 0.99)]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "int8"  # as accurate as float, and smaller
    assert "for float, int8, within 0.05 ms of it" in why
    assert "as accurate as float, more than other, and smaller" in why


def test_smallest_policy_and_fallback_when_latency_is_not_measured() -> None:
    cands = [_cand("float", 100, 10.0), _cand("a", 30, 5.0), _cand("b", 60, 1.0)]
    assert pick(cands, "smallest", 0.05, latency_measured=True)[0].name == "a"
    chosen, why = pick(cands, "fastest", 0.05, latency_measured=False)
    assert chosen.name == "a" and "not measured on the target" in why


def test_float_is_kept_when_every_variant_fails() -> None:
    cands = [_cand("float", 100, 10.0), _cand("a", 30, 5.0, passed=False)]
    chosen, why = pick(cands, "smallest", 0.05, latency_measured=True)
    assert chosen.name == "float" and "a failed" in why


def test_without_data_for_a_model_mlpack_cannot_feed_the_float_model_ships_with_a_reason(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, ["batch", 4])
    nodes = [helper.make_node("SequenceAt", ["xs", "zero"], ["y"], name="first")]
    graph = helper.make_graph(nodes, "seq", [seq], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(np.array(0, np.int64), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "seq.onnx"))
    result = optimize(inspect_model(tmp_path / "seq.onnx"), load_target("x86-cpu"), tmp_path / "work")
    assert names(result) == ["float"] and result.chosen.path.is_file()
    assert "kept the float model" in result.why and "--calibration" in result.to_markdown()


def test_without_passes_the_shipped_float_file_is_the_model_as_given(tmp_path: Path) -> None:
    model = two_layer_model(tmp_path / "m.onnx")
    proto = onnx.load(str(model))
    for node in proto.graph.node:
        node.name = ""  # quantizers need names; mlpack must add them to a copy only
    onnx.save(proto, str(model))
    target = load_target("x86-cpu")
    target = target.model_copy(update={"optimize": target.optimize.model_copy(update={"passes": []})})
    result = optimize(inspect_model(model), target, tmp_path / "work")
    assert "float-optimized" not in names(result)
    assert result.candidates[0].path.read_bytes() == onnx.load(str(model)).SerializeToString()
    assert next(c for c in result.candidates if c.name == "dynamic-int8").passed


def test_a_benchmark_gates_and_times_its_own_models_beside_the_candidates(tmp_path: Path) -> None:
    """What benchmarks/optimize_bench.py composes: make_candidates, add_reference, time_and_pick."""
    import shutil

    model = two_layer_model(tmp_path / "m.onnx")
    run = make_candidates(inspect_model(model), with_variants("x86-cpu", "dynamic-int8"), tmp_path / "work")
    plain = run.add_reference("plain", Path(shutil.copyfile(model, tmp_path / "plain.onnx")), "the model, copied")
    result = time_and_pick(run, budget_s=0.1)
    assert plain in result.candidates and plain.reference and result.chosen is not plain
    assert plain.passed and plain.metrics["y.cosine_min"] > 0.9999 and set(plain.latency) == {1, 32}
    assert next(c for c in result.to_json()["candidates"] if c["name"] == "plain")["reference"]
