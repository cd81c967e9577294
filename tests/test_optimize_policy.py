"""The policy, on made-up candidates: "fastest" never ships a variant slower than float, and
the reason recorded says which measure and which rule decided."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.errors import InputError
from mlpack.optimize.measure import Latency
from mlpack.optimize.pipeline import check_variant
from mlpack.optimize.report import Candidate
from mlpack.optimize.select import NOTICEABLE_BYTES, pick, pinned
from mlpack.optimize.variants import pinned_and_read
from mlpack.targets import load_target


def cand(name: str, size_kb: float, p50_ms: dict[int, float], quality: float = 1.0, passed: bool = True) -> Candidate:
    return Candidate(name, Path(f"{name}.onnx"), round(size_kb * 1024), passed=passed, quality=quality,
                     latency={b: Latency(b, ms, ms) for b, ms in p50_ms.items()})


def demo_x86() -> list[Candidate]:
    """The demo classifier as once measured for x86-cpu (BENCHMARKS.md of 2026-11-27), when
    "fastest" shipped smooth-int8 at 1.08x float's latency: as accurate as float, smaller,
    and within 10%. Fixed figures, so the rule is tested, not the machine."""
    return [
        cand("float", 204.7, {1: 0.00847, 32: 0.0234}),
        cand("float-optimized", 205.6, {1: 0.00822, 32: 0.0231}),
        cand("dynamic-int8", 57.9, {1: 0.00985, 32: 0.0187}, quality=0.997),
        cand("smooth-int8", 60.5, {1: 0.0106, 32: 0.0217}),
    ]


def test_fastest_never_ships_a_variant_slower_than_float_however_accurate_and_small() -> None:
    chosen, why = pick(demo_x86(), "fastest", 0.1, latency_measured=True)
    assert chosen.name != "smooth-int8"
    assert chosen.name == "float"  # tied with float-optimized and dynamic-int8; as accurate, and as small
    assert why.startswith("kept the float model; tied on latency with float-optimized, dynamic-int8 "
                          "(within 10% of dynamic-int8, the fastest), as accurate as float-optimized, "
                          "more than dynamic-int8, and within 10% of float-optimized on size, a tie that goes "
                          "to the first listed;")
    assert "smooth-int8 1.08x the float latency: passed, but slower than float, which never ships as fastest" in why


def test_a_slower_variant_is_not_shipped_even_when_the_difference_is_too_small_to_notice() -> None:
    cands = [cand("float", 200, {1: 0.010}), cand("int8", 60, {1: 0.012})]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "float"
    assert "int8 1.20x the float latency: passed, but slower than float" in why


def test_a_variant_that_runs_floats_own_graph_counts_as_floats_speed_whatever_its_timing_says() -> None:
    # The small conv net of BENCHMARKS.md: stored-int8 timed 1.07x float at batch 32, noise on a
    # graph that, once loaded, is float's own (checked when it was made).
    stored = cand("stored-int8", 27.8, {1: 0.0753, 32: 0.829})
    stored.runs_as = "float"
    cands = [cand("float", 95.4, {1: 0.0767, 32: 0.775}), cand("float-optimized", 96.1, {1: 0.0752, 32: 0.788}),
             stored, cand("mixed-int8", 30.8, {1: 0.0935, 32: 0.945})]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen is stored  # as fast and as accurate as float, and 0.29x its size
    assert why.startswith("fastest variant that passes the gate: 0.29x the float size, 1.00x the float latency")
    assert "stored-int8 runs float's own graph once onnxruntime has loaded it (checked), so its latency is float's" \
        in why
    assert "mixed-int8 1.22x the float latency: passed, but slower than float" in why  # measured, as ever

    stored.runs_as = ""  # unchecked, it is its timing: slower than float, so float ships
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "float" and "stored-int8 1.02x" in why


def test_the_smallest_policy_may_ship_a_variant_slower_than_float() -> None:
    chosen, why = pick(demo_x86(), "smallest", 0.1, latency_measured=True)
    assert chosen.name == "smooth-int8"  # within 10% of dynamic-int8's size, and more accurate
    assert why.startswith("smallest variant that passes the gate: 0.30x the float size, 1.08x the float latency")
    assert ("tied on size with float, float-optimized, dynamic-int8 (within 10% of dynamic-int8, the smallest, or, "
            "for float, float-optimized, within 256.0 KB of it, which no deploy notices beside the runtime it ships "
            "with), as accurate as float, float-optimized, more than dynamic-int8, and smaller (60.5 KB against "
            "204.7 KB)") in why
    assert "slower than float" not in why


def demo_lambda() -> list[Candidate]:
    """The demo classifier as measured for aws-lambda (BENCHMARKS.md of 2026-12-06), when
    "smallest" shipped pruned-int8: 22.9 KB, but 2 of the gate's 338 rows changed class."""
    stored = cand("stored-int8", 54.6, {1: 0.0143, 8: 0.0186})
    stored.runs_as = "float"
    return [cand("float", 199.8, {1: 0.0152, 8: 0.02}), cand("float-optimized", 200.8, {1: 0.0143, 8: 0.0192}),
            stored, cand("dynamic-int8", 56.5, {1: 0.017, 8: 0.0201}, quality=0.997),
            cand("dynamic-int8-per-tensor", 54.6, {1: 0.0148, 8: 0.0174}),
            cand("smooth-int8", 57.0, {1: 0.0175, 8: 0.0204}),
            cand("pruned", 69.0, {1: 0.0118, 8: 0.0144}, quality=0.9911),
            cand("pruned-int8", 22.9, {1: 0.0144, 8: 0.0167}, quality=0.9941)]


def test_under_smallest_a_size_difference_under_256_kib_is_a_tie_that_goes_to_accuracy() -> None:
    chosen, why = pick(demo_lambda(), "smallest", 0.1, latency_measured=True)
    assert chosen.name == "stored-int8"  # agrees with float on every row; 32 KB more than pruned-int8
    assert "or, for float, float-optimized, stored-int8, dynamic-int8, dynamic-int8-per-tensor, smooth-int8, " \
           "pruned, within 256.0 KB of it" in why
    assert "more than dynamic-int8, pruned, pruned-int8, and smaller (54.6 KB against 199.8 KB)" in why
    assert "and within 10% of dynamic-int8-per-tensor on latency, a tie that goes to the first listed" in why


def test_beyond_256_kib_the_smallest_still_ships_though_less_accurate() -> None:
    ten_times = [cand(c.name, c.size_bytes * 10 / 1024, {b: t.p50_ms for b, t in c.latency.items()}, c.quality)
                 for c in demo_lambda()]  # 229 KB against 546 KB: a difference a package carries
    chosen, why = pick(ten_times, "smallest", 0.1, latency_measured=True)
    assert chosen.name == "pruned-int8" and "no other candidate came within 10% of its size" in why


def test_equally_accurate_candidates_tied_by_bytes_still_go_to_the_smallest() -> None:
    cands = [cand("float", 200, {1: 0.02}), cand("int8", 55, {1: 0.02}), cand("int4", 30, {1: 0.02})]
    assert pick(cands, "smallest", 0.1, latency_measured=True)[0].name == "int4"


def test_256_kib_is_under_1_percent_of_the_onnxruntime_library_every_artifact_ships() -> None:
    # The rule's premise, read from the onnxruntime installed here (the release the CPU targets pin).
    import onnxruntime

    library = max((Path(onnxruntime.__file__).parent / "capi").glob("onnxruntime_pybind11_state*"),
                  key=lambda p: p.stat().st_size)
    assert NOTICEABLE_BYTES * 100 < library.stat().st_size


def test_the_reason_names_a_clear_winner_as_such() -> None:
    cands = [cand("float", 100, {1: 10.0}), cand("int8", 30, {1: 5.0}, quality=0.99),
             cand("fp16", 50, {1: 8.0}), cand("broken", 20, {1: 1.0}, passed=False)]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "int8"
    assert why == ("fastest variant that passes the gate: 0.30x the float size, 0.50x the float latency (p50, "
                   "geometric mean over batch 1); no other candidate came within 10% of its latency; "
                   "broken failed the accuracy gate")


def test_ties_go_to_accuracy_then_to_the_other_measure_and_the_reason_says_which() -> None:
    by_accuracy = [cand("float", 100, {1: 10.0}), cand("a", 30, {1: 5.0}, 0.990), cand("b", 40, {1: 5.2}, 0.995)]
    chosen, why = pick(by_accuracy, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "b" and "and the more accurate (its worst gate metric 0.9950 against 0.9900)" in why
    by_size = [cand("float", 100, {1: 10.0}), cand("a", 30, {1: 5.0}), cand("b", 25, {1: 5.2})]
    chosen, why = pick(by_size, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "b" and "as accurate as a and smaller (25.0 KB against 30.0 KB)" in why


def test_a_variant_no_faster_smaller_or_more_accurate_beyond_the_tolerance_leaves_float_in_place() -> None:
    # PP-OCRv4's recognizer (benchmarks.vision): mixed-int8 kept 96 of its 103 quantized layers
    # float, 29 bytes smaller than float, 4% faster on a shared machine: noise on both measures.
    recognizer = [cand("float", 10603.5, {1: 29.2, 32: 640.0}),
                  cand("mixed-int8", 10603.4, {1: 28.6, 32: 605.0}),
                  cand("static-int8", 2987.1, {1: 21.0, 32: 420.0}, quality=0.53, passed=False)]
    chosen, why = pick(recognizer, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "float"
    assert why == ("kept the float model; tied on latency with mixed-int8 (within 10% of mixed-int8, the fastest), "
                   "as accurate as mixed-int8 and within 10% of mixed-int8 on size, a tie that goes to the first "
                   "listed; static-int8 failed the accuracy gate")
    # Beyond the tolerance on the second measure, the smaller one still wins the tie.
    recognizer[1] = cand("mixed-int8", 9000, {1: 28.6, 32: 605.0})
    chosen, why = pick(recognizer, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "mixed-int8" and "as accurate as float and smaller (8.8 MB against 10.4 MB)" in why
    # Under "smallest" the second measure is latency: within the tolerance, float stays too.
    same_size = [cand("float", 100, {1: 10.0}), cand("int8", 95, {1: 9.5})]
    assert pick(same_size, "smallest", 0.1, latency_measured=True)[0].name == "float"


def test_a_reference_is_never_picked_however_good() -> None:
    cands = [cand("float", 100, {1: 10.0}), cand("int8", 30, {1: 5.0}), cand("plain", 10, {1: 1.0})]
    cands[2].reference = True
    assert pick(cands, "fastest", 0.1, latency_measured=True)[0].name == "int8"
    assert pick(cands, "smallest", 0.1, latency_measured=True)[0].name == "int8"


def test_a_pinned_variant_ships_whatever_the_policy_would_pick() -> None:
    chosen, why = pinned(demo_x86(), "smooth-int8", [])
    assert chosen.name == "smooth-int8"  # slower than float, which "fastest" never ships
    assert why == "pinned with --variant smooth-int8, whatever the policy would pick"


def test_a_pinned_variant_must_have_been_made_and_passed_the_gate() -> None:
    cands = demo_x86() + [cand("static-int8", 55, {1: 0.009}, passed=False)]
    cands[-1].reason = "accuracy 0.91 < 0.99"
    with pytest.raises(InputError, match=r"^--variant static-int8 failed the accuracy gate: accuracy 0.91 < 0.99$"):
        pinned(cands, "static-int8", [])
    with pytest.raises(InputError, match=r"^--variant mixed-int8 cannot ship: no layer is sensitive$"):
        pinned(cands, "mixed-int8", [("mixed-int8", "no layer is sensitive")])


def test_an_unknown_pinned_variant_is_refused_before_any_work() -> None:
    with pytest.raises(InputError) as err:
        check_variant(load_target("aws-lambda"), "fp16")
    assert err.value.message.startswith("unknown --variant 'fp16': target aws-lambda makes float, ")


def test_a_pinned_variant_is_made_with_only_the_variants_it_reads() -> None:
    """--variant skips the search: the build makes the pinned variant and what it builds on."""
    listed = load_target("x86-cpu").optimize.variants
    assert pinned_and_read(listed, "dynamic-int8") == ["dynamic-int8"]
    assert pinned_and_read(listed, "compact-int8") == ["smooth-int8", "compact-int8"]
    assert pinned_and_read(listed, "pruned-int8") == ["pruned", "pruned-int8"]
    assert pinned_and_read(listed, "mixed-int8") == [
        "dynamic-int8", "smooth-int8", "static-int8", "compact-int8", "mixed-int8"]
    assert pinned_and_read(listed, "float") == []


def test_a_variant_barely_slower_than_float_says_by_how_much_not_1_00x() -> None:
    cands = [cand("float", 200, {1: 0.1000}), cand("int8", 60, {1: 0.1004})]
    chosen, why = pick(cands, "fastest", 0.1, latency_measured=True)
    assert chosen.name == "float" and "int8 1.004x the float latency: passed, but slower than float" in why
