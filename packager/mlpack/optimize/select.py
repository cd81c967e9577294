"""Pick the variant to ship by the target's policy, among those that passed the gate.

"fastest" (servers) ranks by latency relative to float, averaged over the measured batch
sizes; "smallest" (Lambda, edge) ranks by file size. Differences within the target's
tolerance are noise on a shared machine, not a win: such candidates tie, and the tie goes
to the more accurate, then to the smaller (or faster) one. Latencies within 0.05 ms of
the fastest also tie: for tiny models that is overhead, not speed.
"""

from __future__ import annotations

import math

from .report import Candidate


def _speed(c: Candidate, baseline: Candidate) -> float:
    """Geometric mean of p50 latency ratios to float over the batch sizes both have."""
    ratios = [c.latency[b].p50_ms / baseline.latency[b].p50_ms for b in c.latency if b in baseline.latency]
    return math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else 1.0


NOTICEABLE_MS = 0.05  # below this, a latency difference drowns in any request's overhead


def _unnoticeable(c: Candidate, leader: Candidate) -> bool:
    """Every measured p50 within NOTICEABLE_MS of the leader's (tiny models: all overhead)."""
    shared = [b for b in c.latency if b in leader.latency]
    return bool(shared) and all(c.latency[b].p50_ms - leader.latency[b].p50_ms <= NOTICEABLE_MS for b in shared)


def pick(candidates: list[Candidate], policy: str, tolerance: float, latency_measured: bool) -> tuple[Candidate, str]:
    candidates = [c for c in candidates if not c.reference]
    baseline = candidates[0]
    passing = [c for c in candidates if c.passed]
    failed = [c.name for c in candidates if not c.passed]
    if passing in ([], [baseline]):
        why = "no other variant passed the accuracy gate" if failed else "no other variant was made"
        return baseline, f"kept the float model: {why}" + (f" ({', '.join(failed)} failed)" if failed else "")
    failed_note = f"; {', '.join(failed)} failed the accuracy gate" if failed else ""

    fallback = ""
    if policy == "fastest" and not latency_measured:
        policy = "smallest"
        fallback = " (latency was not measured on the target, so the smallest stands in for the fastest)"
    size = {c.name: c.size_bytes / baseline.size_bytes for c in passing}
    speed = {c.name: _speed(c, baseline) for c in passing}
    primary, secondary = (speed, size) if policy == "fastest" else (size, speed)
    best = min(primary.values())
    leader = next(c for c in passing if primary[c.name] == best)
    tied = [c for c in passing
            if primary[c.name] <= best * (1 + tolerance)
            or (policy == "fastest" and _unnoticeable(c, leader))]
    chosen = min(tied, key=lambda c: (-round(c.quality, 4), secondary[c.name]))
    what = "fastest" if policy == "fastest" else "smallest"
    why = (f"{what} variant that passes the gate{fallback}: {size[chosen.name]:.2f}x the float size"
           + (f", {speed[chosen.name]:.2f}x the float latency" if latency_measured else ""))
    if len(tied) > 1:
        others = ", ".join(c.name for c in tied if c is not chosen)
        why += f"; within {tolerance:.0%} of {others}, and more accurate or smaller"
    return chosen, why + failed_note
