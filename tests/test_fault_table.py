"""docs/reliability.md's fault table (`python -m benchmarks.fault_table`) counts only the
faults a test injected: one it could not inject is listed apart, with no loss, and is
never counted as measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fault_table
from benchmarks.fault_table import END, NOT_INJECTED, START, table

from .faults import FAULTS, nodeid, read_results, record_fault, record_not_injected

INJECTED, SKIPPED = FAULTS[0], next(f for f in FAULTS if f.id == "service-crash")


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "results"
    monkeypatch.setenv("MLPACK_FAULT_RESULTS", str(folder))
    record_fault(INJECTED.id, nodeid(), "cut the link", "error: unreachable", lost=0, detail="9 of 9 untouched")
    record_not_injected(SKIPPED.id, nodeid(), "no systemd as PID 1", "the units verified")
    return folder


def test_a_fault_that_was_not_injected_is_listed_apart_and_not_counted(results: Path) -> None:
    text = table(read_results(results))
    injected, apart = text.split(NOT_INJECTED)
    assert f"| {INJECTED.title} | cut the link | error: unreachable | **0** {INJECTED.loss_unit}" in injected
    assert SKIPPED.title not in injected
    row = next(line for line in apart.splitlines() if line.startswith(f"| {SKIPPED.title} |"))
    assert "no systemd as PID 1" in row and "the units verified" in row
    assert "**" not in apart and SKIPPED.loss_unit not in apart, "no loss is shown for a fault not injected"
    assert f"1 of {len(FAULTS)} faults injected and measured, 1 not injected;" in text
    assert text.count("| no result: the test did not run or did not pass |") == len(FAULTS) - 2


def test_check_fails_for_faults_without_a_result_and_keep_never_turns_a_skipped_row_into_a_measured_one(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "reliability.md"
    doc.write_text(f"# page\n\n{START}\nold\n{END}\n\nafter\n")
    assert fault_table.main(["--results", str(results), "--doc", str(doc), "--check"]) == 1
    assert "fault_table: not injected (listed apart, not measured): service-crash" in capsys.readouterr().err
    assert doc.read_text().endswith(f"{END}\n\nafter\n")

    # A later run that has only the injected fault's result keeps the other rows of the
    # injected table, never the not-injected one.
    (results / f"{SKIPPED.id}.json").unlink()
    fault_table.main(["--results", str(results), "--doc", str(doc), "--keep"])
    assert SKIPPED.title in doc.read_text() and NOT_INJECTED not in doc.read_text()
    assert f"| {SKIPPED.title} | no result:" in doc.read_text()
