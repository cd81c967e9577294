"""Golden files never approve themselves: CI only compares, and an update is always seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from .golden_files import match_golden


def golden(tmp_path: Path) -> Path:
    folder = tmp_path / "golden"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM base\n")
    return folder


def test_a_difference_fails_and_says_how_to_update(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLPACK_UPDATE_GOLDEN", raising=False)
    with pytest.raises(AssertionError, match="Dockerfile differs from its golden file; if intended: "
                                             "MLPACK_UPDATE_GOLDEN=1"):
        match_golden(golden(tmp_path), {"Dockerfile": "FROM other\n"}, "x86-cpu")


def test_an_update_under_ci_is_refused_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLPACK_UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    folder = golden(tmp_path)
    with pytest.raises(pytest.fail.Exception, match="golden files are updated by a person, never by CI"):
        match_golden(folder, {"Dockerfile": "FROM other\n"}, "x86-cpu")
    assert (folder / "Dockerfile").read_text() == "FROM base\n"


def test_an_update_that_changes_a_file_writes_it_then_fails_for_review(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLPACK_UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "")
    folder = golden(tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"golden updated: review git diff .* \(Dockerfile, new.txt\)"):
        match_golden(folder, {"Dockerfile": "FROM other\n", "new.txt": "x\n"}, "x86-cpu")
    assert (folder / "Dockerfile").read_text() == "FROM other\n" and (folder / "new.txt").is_file()
    match_golden(folder, {"Dockerfile": "FROM other\n", "new.txt": "x\n"}, "x86-cpu")  # nothing new: passes
