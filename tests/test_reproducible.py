"""Bit-identical rebuilds: the demo built twice for each target gives the same bytes for
every file in the manifest, and the same manifest; only the reports (timings) differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpack.build import BuildRequest, build
from mlpack.progress import Progress
from mlpack.trust.reproducible import ZIP_EPOCH, source_date_epoch

TARGETS = ("x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda")


def sums(root: Path) -> dict[str, str]:
    return {path: entry["sha256"] for path, entry in json.loads((root / "manifest.json").read_text())["files"].items()}


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_two_builds_of_the_demo_give_the_same_bytes(demo_artifact, target: str, tmp_path: Path) -> None:
    # The "fastest" policy (x86-cpu) picks by timing, so a rebuild may pick another variant:
    # --variant pins the pick, as a user who wants the same bytes does.
    variant = demo_artifact(target).manifest.model.variant
    first, second = (build(BuildRequest(target=target, out=tmp_path / run, variant=variant), Progress(quiet=True))
                     for run in ("first", "second"))
    assert first.manifest.model.variant == second.manifest.model.variant == variant

    a, b = sums(first.path), sums(second.path)
    assert sorted(a) == sorted(b)
    differ = sorted(path for path in a if a[path] != b[path])
    assert differ == [], f"not reproducible: {differ}"
    assert "report.md" not in a and "report.json" not in a  # measurements, not content
    # Measurements stay out of the manifest, so it is the same too (a digest names the build).
    assert (first.path / "manifest.json").read_bytes() == (second.path / "manifest.json").read_bytes()
    build_inputs = first.manifest.build
    assert build_inputs.source_model_sha256 == first.manifest.model.source.sha256
    assert build_inputs.source_date_epoch == source_date_epoch(build_inputs.digest)
    if first.manifest.bento is not None:  # the build's time, not the clock's
        assert "creation_time: '198" in (first.path / "bento" / "bento.yaml").read_text()


def test_the_build_time_comes_from_source_date_epoch_else_from_the_inputs(monkeypatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    derived = source_date_epoch("ab" * 32)
    assert derived == source_date_epoch("ab" * 32) != source_date_epoch("cd" * 32)
    assert ZIP_EPOCH <= derived < ZIP_EPOCH + 2**28
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch("ab" * 32) == 1700000000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    from mlpack.errors import InputError

    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH='yesterday' is not a number"):
        source_date_epoch("ab" * 32)
