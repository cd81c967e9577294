"""Pick the variant to ship by the target's policy, among those that passed the gate.

"fastest" (servers) ranks by latency relative to float: the geometric mean of p50 ratios
over the measured batch sizes. A variant slower than float by that measure never ships
under it, however accurate or small. "smallest" (Lambda, edge) ranks by file size.
Differences within the target's tolerance are noise on a shared machine, not a win: such
candidates tie, and the tie goes to the more accurate, then to the smaller (or faster)
one; where that second measure is within the tolerance too, to the first listed, which puts
float before its variants: a variant neither faster, smaller nor more accurate by more than
noise is not worth what it changes (PP-OCRv4's recognizer: a mixed-int8 with 96 of its 103
layers float, 29 bytes smaller). A candidate whose session runs float's own graph once loaded
(stored-int8, checked when made: `Candidate.runs_as`) has float's speed by construction.
Latencies within 0.05 ms of the fastest also tie: for tiny models that is overhead, not speed.
Likewise sizes within 256 KiB of the smallest: every artifact ships onnxruntime's library
beside the model (35 MB on x86_64), so such a difference changes no package limit, download
or cold start, and the tie goes to accuracy; among the equally accurate, the smallest still
wins (a demo classifier on Lambda: 54.6 KB that agrees with float on every row, not 22.9 KB
that changes 2 of 338). The reason returned names the rule that decided.
"""

from __future__ import annotations

import math
from typing import Iterable

from ..errors import InputError
from ..sizes import format_size
from .report import Candidate

NOTICEABLE_MS = 0.05  # below this, a latency difference drowns in any request's overhead
NOTICEABLE_BYTES = 256 << 10  # ...and a size difference in the runtime shipped beside the model (under 1% of it)


def _speed(c: Candidate, baseline: Candidate) -> float:
    """Geometric mean of p50 latency ratios to float over the batch sizes both have."""
    ratios = [c.latency[b].p50_ms / baseline.latency[b].p50_ms for b in c.latency if b in baseline.latency]
    return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else 1.0


def relative_latency(c: Candidate, baseline: Candidate) -> float:
    """The measure "fastest" ranks by: p50 latency relative to float's (geometric mean)."""
    return _speed(c, baseline)


def _unnoticeable(c: Candidate, leader: Candidate) -> bool:
    """Every measured p50 within NOTICEABLE_MS of the leader's (tiny models: all overhead)."""
    shared = [b for b in c.latency if b in leader.latency]
    return bool(shared) and all(c.latency[b].p50_ms - leader.latency[b].p50_ms <= NOTICEABLE_MS for b in shared)


def _unnoticeably_larger(c: Candidate, leader: Candidate) -> bool:
    """Within NOTICEABLE_BYTES of the leader's size (tiny models: the runtime is the package)."""
    return c.size_bytes - leader.size_bytes <= NOTICEABLE_BYTES


def _names(candidates: Iterable[Candidate]) -> str:
    return ", ".join(c.name for c in candidates)


def pick(candidates: list[Candidate], policy: str, tolerance: float, latency_measured: bool) -> tuple[Candidate, str]:
    """The candidate to ship, and why, in words that name the measure and the rule that decided.
    Held-back candidates (passed, but on synthetic inputs only) never ship; the reason names them."""
    held = [c for c in candidates if c.held and not c.reference]
    chosen, why = _pick([c for c in candidates if not c.reference and not c.held], policy, tolerance,
                        latency_measured, bool(held))
    if held:
        why += f"; {_names(held)} held back: passed on synthetic inputs only"
    return chosen, why


def _pick(candidates: list[Candidate], policy: str, tolerance: float, latency_measured: bool,
          held: bool) -> tuple[Candidate, str]:
    baseline = candidates[0]
    passing = [c for c in candidates if c.passed]
    failed = [c.name for c in candidates if not c.passed]
    if passing in ([], [baseline]):
        why = ("no other variant passed the accuracy gate" if failed else
               "no other variant may ship" if held else "no other variant was made")
        return baseline, f"kept the float model: {why}" + (f" ({', '.join(failed)} failed)" if failed else "")

    fallback = ""
    if policy == "fastest" and not latency_measured:
        policy = "smallest"
        fallback = " (latency was not measured on the target, so the smallest stands in for the fastest)"
    fastest = policy == "fastest"
    size = {c.name: c.size_bytes / baseline.size_bytes for c in passing}
    # A candidate whose session runs float's own graph once loaded is float's speed; what its
    # timing says besides is the machine's noise.
    same = [c for c in passing if c is not baseline and c.runs_as == baseline.name]
    speed = {c.name: 1.0 if c in same else _speed(c, baseline) for c in passing}
    # Float is the yardstick: under "fastest", shipping something slower than it gains nothing.
    slower = [c for c in passing if fastest and c is not baseline and speed[c.name] > 1.0]
    eligible = [c for c in passing if c not in slower]
    primary, secondary = (speed, size) if fastest else (size, speed)
    best = min(primary[c.name] for c in eligible)
    leader = next(c for c in eligible if primary[c.name] == best)
    in_band = [c for c in eligible if primary[c.name] <= best * (1 + tolerance)]
    unnoticed = _unnoticeable if fastest else _unnoticeably_larger
    by_abs = [c for c in eligible if c not in in_band and unnoticed(c, leader)]
    tied = [c for c in eligible if c in in_band or c in by_abs]
    accuracy = {c.name: round(c.quality, 4) for c in tied}
    most_accurate = [c for c in tied if accuracy[c.name] == max(accuracy.values())]
    # Under "smallest", a tie by bytes alone hands the pick to accuracy, never to a larger file
    # among the equally accurate: those stay within the tolerance of the smallest of them.
    least_size = min(size[c.name] for c in most_accurate)
    as_small = [c for c in most_accurate if fastest or size[c.name] <= least_size * (1 + tolerance)]
    least = min(secondary[c.name] for c in as_small)
    close = [c for c in as_small if secondary[c.name] <= least * (1 + tolerance)]
    chosen = close[0]  # in the order listed: float, then its variants

    what = "fastest" if fastest else "smallest"
    measure, other_measure = ("latency", "size") if fastest else ("size", "latency")
    why = "kept the float model" + fallback if chosen is baseline else (
        f"{what} variant that passes the gate{fallback}: {size[chosen.name]:.2f}x the float size"
        + (f", {speed[chosen.name]:.2f}x the float latency (p50, geometric mean over batch "
           f"{', '.join(map(str, sorted(chosen.latency)))})" if latency_measured else ""))
    others = [c for c in tied if c is not chosen]
    rivals = [c for c in most_accurate if c is not chosen]
    if not others:
        if len(eligible) > 1:
            why += f"; no other candidate came within {tolerance:.0%} of its {measure}"
    else:
        why += (f"; tied on {measure} with {_names(others)} (within {tolerance:.0%} of {leader.name}, the {what}"
                + (f", or, for {_names(by_abs)}, {_unnoticed_words(fastest)}" if by_abs else "") + ")")
        if not rivals:
            why += (f", and the more accurate (its worst gate metric {accuracy[chosen.name]:.4f} against "
                    f"{max(accuracy[c.name] for c in others):.4f})")
        else:
            less = [c for c in others if c not in rivals]
            why += f", as accurate as {_names(rivals)}" + (f", more than {_names(less)}," if less else "")
            larger = [c for c in rivals if c not in as_small]
            far = [c for c in rivals if c in as_small and c not in close]
            near = [c for c in close if c is not chosen]
            if larger:
                why += _smaller_than(chosen, larger)
            if far:
                why += _second_rule(chosen, far, fastest, speed)
            if near:
                why += (f"{',' if far else ''} and within {tolerance:.0%} of {_names(near)} on {other_measure}, "
                        "a tie that goes to the first listed")
    if chosen in same and fastest:
        why += (f"; {chosen.name} runs {baseline.name}'s own graph once onnxruntime has loaded it (checked), so "
                f"its latency is {baseline.name}'s")
    if slower:
        ratios = ", ".join(f"{c.name} {_ratio(speed[c.name])}x" for c in slower)
        why += f"; {ratios} the float latency: passed, but slower than float, which never ships as fastest"
    return chosen, why + (f"; {', '.join(failed)} failed the accuracy gate" if failed else "")


def _ratio(value: float) -> str:
    """A ratio to float in two decimals, or three where two would read 1.00 for one above it."""
    return f"{value:.2f}" if f"{value:.2f}" != "1.00" else f"{value:.3f}"


def _unnoticed_words(fastest: bool) -> str:
    if fastest:
        return f"within {NOTICEABLE_MS} ms of it at every batch size, which no request notices"
    return (f"within {format_size(NOTICEABLE_BYTES)} of it, which no deploy notices beside the runtime it "
            "ships with")


def _smaller_than(chosen: Candidate, rivals: list[Candidate]) -> str:
    return f" and smaller ({format_size(chosen.size_bytes)} against {format_size(min(c.size_bytes for c in rivals))})"


def _second_rule(chosen: Candidate, rivals: list[Candidate], fastest: bool, speed: dict[str, float]) -> str:
    """How the chosen one beat the candidates as accurate as it: smaller (fastest) or faster (smallest)."""
    if fastest:
        return _smaller_than(chosen, rivals)
    return f" and faster ({speed[chosen.name]:.2f}x against {min(speed[c.name] for c in rivals):.2f}x float's latency)"


def pinned(candidates: list[Candidate], name: str, skipped: list[tuple[str, str]]) -> tuple[Candidate, str]:
    """The candidate `--variant NAME` pins, when it was made and passed the gate."""
    chosen = next((c for c in candidates if c.name == name and not c.reference), None)
    if chosen is None:
        reason = dict(skipped).get(name, "it was not made")
        raise InputError(f"--variant {name} cannot ship: {reason}",
                         "drop --variant to let the target's policy pick, or pin another variant")
    if not chosen.passed:
        raise InputError(f"--variant {name} failed the accuracy gate: {chosen.reason}",
                         "drop --variant, pin another variant, or relax the gate with --gate KEY=VALUE")
    if chosen.held:
        raise InputError(f"--variant {name} cannot ship: it {chosen.held}",
                         "pass --calibration FILE.npz with real inputs, or --gate synthetic=allow to ship it anyway")
    return chosen, f"pinned with --variant {name}, whatever the policy would pick"
