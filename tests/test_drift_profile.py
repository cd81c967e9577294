"""The drift profile made at build, and the served model's binning by it (mlpack.monitoring.drift,
mlpack_runtime.drift): the spec of what a profile holds and of the counts that travel."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mlpack.monitoring.drift import MAX_COLUMNS, ProfileData, build_profile, drift_markdown, features, make_profile, write_profile
from mlpack.model.info import Signature, TensorSpec
from mlpack.runtime.drift import DriftMeter, Profile, load_meter

from .drift_support import SIGNATURE, classify, pixels, profile


def test_a_profile_has_a_feature_per_column_the_class_mix_and_the_top_probability() -> None:
    made = profile(rows=400)
    names = [f["name"] for f in features(made)]
    assert names == [f"pixels[{j}]" for j in range(16)] + ["label", "probabilities:max"]
    for feature in features(made):  # every calibration row lands in one slot of every feature
        assert sum(feature["reference"]) == 400
        # ... inside the profile's range, which is the calibration data's own
        assert [feature["reference"][j] for j in feature["outside"]] == [0] * len(feature["outside"])
    label = features(made)[16]
    assert label["outside"] == [len(label["reference"]) - 1]  # "other" classes: none at build
    assert label["reference"][-1] == 0


def test_a_profile_is_compact_and_its_id_follows_its_content(tmp_path: Path) -> None:
    made = profile(rows=400)
    size = write_profile(tmp_path, made).stat().st_size
    assert size < 8_000, size  # kilobytes: 18 features
    assert profile(rows=400)["id"] == made["id"]  # the same data, the same profile
    assert profile(rows=399)["id"] != made["id"]


def test_a_mostly_zero_column_keeps_zero_in_a_bin_of_its_own() -> None:
    made = profile(rows=400)
    sparse = made["groups"][0]["features"][0]
    assert sparse["edges"][:2] == [0.0, 0.0625]  # [0, 1/16): the zeros alone
    assert sparse["reference"][1] > 300


def test_few_calibration_rows_get_fewer_bins() -> None:
    bins = lambda made: max(len(f["edges"]) - 1 for f in made["groups"][0]["features"][3:])  # noqa: E731
    assert bins(profile(rows=400, max_bins=10)) >= 8
    assert bins(profile(rows=60, max_bins=10)) <= 2 * 3  # 60 rows / 20 per bin, point masses apart


def test_the_meter_counts_as_the_profile_counts_all_rows_at_once() -> None:
    counter = Profile(profile())
    meter = DriftMeter(counter, ["label", "probabilities"], max_per_s=None, interval_s=0)
    requests = [pixels(n, seed=s) for s, n in enumerate([1, 3, 7, 1])]
    for x in requests:
        out = classify(x)
        meter.add({"pixels": x}, [out["label"], out["probabilities"]])
    taken = meter.take()
    everything = np.concatenate(requests)
    rows, outside, counts = counter.count([({"pixels": everything}, classify(everything))])
    assert taken == {"profile": counter.id, "rows": 12, "outside": outside, "counts": counts.tolist()}
    assert meter.take() is None  # nothing since
    meter.put_back(taken)  # a full socket: the counts wait for the next datagram
    assert meter.take() == taken


def test_a_busy_service_bins_a_sample_and_sends_counts_a_few_times_a_second() -> None:
    now = [100.0]
    meter = DriftMeter(Profile(profile()), ["label", "probabilities"], max_per_s=10, interval_s=0.2,
                       clock=lambda: now[0])
    x = pixels(1)
    out = list(classify(x).values())
    kept = []
    for second in range(6):  # 40 requests a second: the first 10 the first second, then about a quarter
        before = meter.kept
        for _ in range(40):
            meter.add({"pixels": x}, out)
            now[0] += 0.025
        kept.append(meter.kept - before)
    assert kept[0] == 10 and all(k <= 10 for k in kept) and 3 <= sum(kept[1:]) / 5 <= 10, kept
    assert meter.take()["rows"] == meter.kept
    for _ in range(40):  # some of them kept
        meter.add({"pixels": x}, out)
    assert meter.waiting()  # the client's lingerer sends them even if no request follows
    assert meter.take() is None  # 0.2 s have not passed
    meter.send_now()  # the end of a Lambda invocation
    assert meter.take()["rows"] >= 1 and not meter.waiting()


def test_a_sample_of_periodic_traffic_has_every_phase_of_it() -> None:
    """Traffic that repeats every 4 requests, sampled at a quarter: a sampler keeping every
    4th request would see one kind only (the calm-looking window of a drifting service)."""
    now = [100.0]
    meter = DriftMeter(Profile(profile()), ["label", "probabilities"], max_per_s=100, interval_s=0,
                       clock=lambda: now[0])
    rows = [pixels(1, seed=seed) for seed in range(4)]
    outputs = [list(classify(x).values()) for x in rows]
    for i in range(4000):  # 400 a second
        meter.add({"pixels": rows[i % 4]}, outputs[i % 4])
        now[0] += 0.0025
    kinds = {id(inputs["pixels"]) for inputs, _ in meter._pending}
    assert kinds == {id(x) for x in rows}


def test_values_outside_the_range_and_nan_land_outside() -> None:
    counter = Profile(profile())
    x = pixels(2, seed=5)
    x[0, 5], x[1, 6] = 7.0, np.nan
    rows, outside, counts = counter.count([({"pixels": x}, classify(np.nan_to_num(x)))])
    assert (rows, outside) == (2, 2)
    first = counter.groups[0]
    above = lambda j: int(first.offsets[j] + len(first.features[j]["edges"]))  # noqa: E731
    assert counts[above(5)] == 1 and counts[above(6)] == 1


def test_a_request_that_does_not_fit_the_profile_is_left_out_whole() -> None:
    meter = DriftMeter(Profile(profile()), ["label", "probabilities"], max_per_s=None, interval_s=0)
    good = pixels(2)
    meter.add({"pixels": good}, list(classify(good).values()))
    meter.add({"pixels": np.zeros((1, 5), np.float32)}, list(classify(good).values()))  # wrong width
    meter.add({"other": good}, list(classify(good).values()))  # no pixels
    assert meter.take()["rows"] == 2


def test_adding_keeps_references_only_and_is_thread_safe() -> None:
    meter = DriftMeter(Profile(profile()), ["label", "probabilities"], max_per_s=None, interval_s=0)
    x = pixels(1)
    out = list(classify(x).values())

    def send() -> None:
        for _ in range(500):
            meter.add({"pixels": x}, out)

    threads = [threading.Thread(target=send) for _ in range(4)]
    taken = []
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        taken.append(meter.take())
    taken.append(meter.take())
    assert sum(t["rows"] for t in taken if t) == 2000


def test_sequences_embeddings_and_strings_are_summarised_per_row() -> None:
    ids = np.array([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]] * 30, dtype=np.int64)
    text = np.array([["a short sentence"], ["another one, a little longer"]] * 30, dtype=object)
    embedding = np.random.default_rng(0).standard_normal((60, 24)).astype(np.float32)
    signature = Signature(
        inputs=[TensorSpec(name="input_ids", dtype="int64", shape=["batch", "sequence"]),
                TensorSpec(name="text", dtype="object", shape=["batch", 1])],
        outputs=[TensorSpec(name="embedding", dtype="float32", shape=["batch", 24])])
    made = make_profile(ProfileData({"input_ids": ids, "text": text}, {"embedding": embedding}, "test"), signature,
                        10, sequences={"input_ids": 0})
    assert [f["name"] for f in features(made)] == [
        "input_ids:nonzero", "input_ids:nonzero_mean", "text:chars", "text:words", "embedding:norm",
        "embedding:centroid_cosine"]
    counter = Profile(made)
    shorter = {"input_ids": np.array([[101, 102]]), "text": np.array([["hi"]], dtype=object)}
    rows, outside, counts = counter.count([(shorter, {"embedding": embedding[:1]})])
    assert (rows, outside) == (1, 1)  # 2 tokens, 2 characters: below anything seen at build


def test_a_normalized_embedding_is_tracked_by_its_direction_not_its_norm() -> None:
    """Its norm is 1 up to float32 rounding, which differs with the batch a row ran in: binned,
    the first single-row request would land outside the calibration range."""
    embedding = np.random.default_rng(0).standard_normal((60, 24)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    signature = Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=["batch", 2])],
                          outputs=[TensorSpec(name="embedding", dtype="float32", shape=["batch", 24])])
    made = make_profile(ProfileData({"x": np.ones((60, 2), np.float32)}, {"embedding": embedding}, "test"),
                        signature, 10)
    assert [f["name"] for f in features(made) if f["name"].startswith("embedding")] == ["embedding:centroid_cosine"]


def test_an_output_equal_up_to_rounding_lands_in_the_bin_of_its_calibration_row() -> None:
    """Edges of what a model computes lie between calibration values, not on them: the same
    rows run in another batch (rounding one float32 ulp either way) count the same."""
    scores = np.repeat(np.array([[0.1], [0.25], [0.5], [0.75], [0.9]], np.float32), 12, axis=0)
    signature = Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=["batch", 1])],
                          outputs=[TensorSpec(name="score", dtype="float32", shape=["batch", 1])])
    counter = Profile(make_profile(ProfileData({"x": scores}, {"score": scores}, "test"), signature, 10))
    for nudged in (np.nextafter(scores, np.float32(2)), np.nextafter(scores, np.float32(-2))):
        assert np.array_equal(counter.count([({"x": scores}, {"score": nudged})])[2],
                              counter.count([({"x": scores}, {"score": scores})])[2])


def test_a_wide_input_is_summarised_not_binned_per_column() -> None:
    wide = np.random.default_rng(0).random((40, MAX_COLUMNS + 1)).astype(np.float32)
    signature = Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=["batch", MAX_COLUMNS + 1])],
                          outputs=[])
    made = make_profile(ProfileData({"x": wide}, {}, "test"), signature, 10)
    assert [f["name"] for f in features(made)] == ["x:mean", "x:std"]


def test_without_real_data_there_is_no_profile_and_the_report_says_so(tmp_path: Path) -> None:
    made, note = build_profile(tmp_path / "model.onnx", SIGNATURE, None, None, True, "synthetic inputs")
    assert made is None
    assert "no calibration data" in note and "--calibration" in note
    assert "exports no drift metrics" in drift_markdown(None, note)


def test_a_profile_this_runtime_cannot_read_means_serving_without_drift(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({**profile(), "version": 99}))
    assert load_meter(str(path), []) is None
    assert load_meter(str(tmp_path / "missing.json"), []) is None


def test_the_build_refuses_a_profile_whose_rows_do_not_add_up() -> None:
    x = pixels(50)
    outputs = classify(x)
    outputs["label"] = outputs["label"][:10]  # outputs of other rows than the inputs'
    with pytest.raises(ValueError, match="binned 0 of 50"):
        make_profile(ProfileData({"pixels": x}, outputs, "test"), SIGNATURE, 10)
