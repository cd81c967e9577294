"""`--quick --check`: a benchmark's short run, for CI (tests/test_benchmarks_quick.py).

A quick run takes seconds: small sizes, short windows, nothing written to BENCHMARKS.md
or the docs. It measures each figure beside its baseline in the same run (so a busy
machine slows both) and compares their ratio with the limit the benchmark's goal states;
with `--check` a ratio past its limit exits 1. The figures of a quick run are a regression
guard, not the published ones: those come from the full run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, TypeVar

from mlpack.artifact import Artifact

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Ratio:
    """`measured / baseline`, both from this run, which must stay at most `at_most`."""

    name: str
    measured: float
    baseline: float
    at_most: float

    @property
    def value(self) -> float:
        return self.measured / self.baseline

    @property
    def ok(self) -> bool:
        return self.value <= self.at_most

    def line(self) -> str:
        verdict = "ok" if self.ok else "REGRESSION"
        return (f"check: {self.name}: {self.measured:.4g} / {self.baseline:.4g} = {self.value:.3f} "
                f"(at most {self.at_most:g}): {verdict}")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a short run (seconds) that writes nothing; for CI, with --check")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a ratio passes its limit (measured against its baseline in this run)")


def report(ratios: list[Ratio], check: bool) -> int:
    """Print one line per ratio; the exit code for `--check`."""
    for ratio in ratios:
        print(ratio.line())
    return 1 if check and not all(r.ok for r in ratios) else 0


def measured_again(run: Callable[[int], list[Ratio]], attempts: int = 3) -> list[Ratio]:
    """`run(try_number)`, again while any of its ratios is past its limit, up to `attempts` tries;
    each try's lines are printed, the last try's ratios returned.

    For the checks whose two sides share the 2 cores with three pytest workers: one try can
    land on another process's burst (a served route at 2.0x where quiet runs give 0.7x to
    1.3x), a real regression fails every try."""
    for attempt in range(1, attempts + 1):
        ratios = run(attempt)
        if attempt == attempts or all(r.ok for r in ratios):
            return ratios
        print(*(f"try {attempt} of at most {attempts}: {r.line()}" for r in ratios), sep="\n")
    raise ValueError("attempts must be at least 1")


def add_artifact_option(parser: argparse.ArgumentParser, target: str) -> None:
    parser.add_argument("--artifact", type=Path, metavar="DIR",
                        help=f"with --quick: the demo's {target} artifact to reuse (the test session builds one); "
                             "built here when absent")


def writing_parser(doc: str, target: str) -> argparse.ArgumentParser:
    """The options of a script that writes its BENCHMARKS.md section from the demo built for
    `target`: --no-write, --quick --check and --artifact."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    add_options(parser)
    add_artifact_option(parser, target)
    return parser


def demo_artifact(given: Path | None, target: str, out: Path) -> Artifact:
    """The demo built for `target`: `given` (an artifact folder), or a build into `out`."""
    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    if given is None:
        return Artifact.open(build(BuildRequest(target=target, out=out), Progress(quiet=True)).path)
    artifact = Artifact.open(given)
    if artifact.manifest.target.name != target:
        raise SystemExit(f"--artifact {given} is built for {artifact.manifest.target.name}; "
                         f"this benchmark needs a {target} artifact of the demo")
    return artifact


@contextmanager
def demo_image(given: Path | None, work: Path, quiet: bool = True) -> Iterator[tuple[Artifact, str]]:
    """The x86-cpu demo artifact and its image's id: the image `given`'s manifest names (as
    `mlpack image` left it), else one built here on the offline stand-in base (into a copy of
    `given`, or of a demo built into `work`) and removed after."""
    from mlpack.image.build import build_image
    from mlpack.image.builder import BuildahBuilder
    from mlpack.progress import Progress
    from tests.standin import ensure_standin

    artifact = demo_artifact(given, "x86-cpu", work / "out")
    if artifact.manifest.image.id:
        yield artifact, artifact.manifest.image.id
        return
    if given is not None:
        artifact = Artifact.open(shutil.copytree(artifact.root, work / "copy" / artifact.root.name))
    built = build_image(artifact, BuildahBuilder(), ensure_standin("amd64"), Progress(quiet=quiet))
    try:  # by id: the demo's name:tag is the same for every build of it
        yield artifact, built.id
    finally:
        subprocess.run(["buildah", "rmi", "-f", built.id], capture_output=True)


def interleaved(runs: dict[K, Callable[[float], dict[str, float]]], seconds: float, rounds: int = 4,
                ) -> dict[K, dict[str, Any]]:
    """Each of `runs` (a load run for so many seconds: serve_throughput.load) `rounds` times for
    `seconds / rounds`, in turn (A B C A B C ...): on a shared machine a change of load falls
    on all of them alike, where one after the other it would favour one. Requests/s is the
    mean over the rounds, p50 and p95 their medians, errors their sum; `rounds` holds each
    round's own figures, for ratios taken round by round."""
    parts: dict[K, list[dict[str, float]]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            parts[key].append(run(seconds / rounds))
    return {key: {"rps": statistics.mean(p["rps"] for p in got), "rounds": got,
                  "p50_ms": statistics.median(p["p50_ms"] for p in got),
                  "p95_ms": statistics.median(p["p95_ms"] for p in got),
                  "errors": sum(p["errors"] for p in got)} for key, got in parts.items()}
