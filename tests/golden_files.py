"""Golden files: compared in every run; rewritten only on request, and never silently.

    MLPACK_UPDATE_GOLDEN=1 pytest tests/test_golden.py tests/test_report_html.py   (make golden)

An update run writes the files it was asked to, then fails if any of them changed ("golden
updated: review git diff"), so a rewrite is always seen and reviewed, never passed as a test.
Under CI=true an update is refused outright: CI compares, it never approves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import in_ci

UPDATE_ENV = "MLPACK_UPDATE_GOLDEN"
HOW = f"if intended: {UPDATE_ENV}=1 pytest tests/test_golden.py tests/test_report_html.py (make golden)"


def updating() -> bool:
    if os.environ.get(UPDATE_ENV) != "1":
        return False
    if in_ci():
        pytest.fail(f"{UPDATE_ENV}=1 under CI=true: golden files are updated by a person, never by CI", pytrace=False)
    return True


def match_golden(folder: Path, files: dict[str, str], what: str) -> None:
    """`files` (relative path -> text) equal the golden folder exactly: the same names, the same texts."""
    if updating():
        before = _read(folder)
        shutil.rmtree(folder, ignore_errors=True)
        for relative, text in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
        if before != files:
            changed = sorted(set(before) ^ set(files) | {p for p in files if before.get(p) != files[p]})
            pytest.fail(f"golden updated: review git diff {folder} ({', '.join(changed[:5])}"
                        f"{', ...' if len(changed) > 5 else ''})", pytrace=False)
        return
    golden = _read(folder)
    assert set(files) == set(golden), f"{what}: files differ from the golden set; {HOW}"
    for relative, text in files.items():
        assert text == golden[relative], f"{what}: {relative} differs from its golden file; {HOW}"


def _read(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*") if p.is_file()}
