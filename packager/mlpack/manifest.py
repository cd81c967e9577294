"""manifest.json: what an artifact is and holds. Every command after `build` reads it.

It is written last, after every other file, and rewritten atomically (temp file +
rename) by the commands that add to it, such as `mlpack push` recording a digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .errors import InputError
from .fsutil import atomic_write
from .model_info import sha256_file

MANIFEST = "manifest.json"


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file in the artifact but the manifest itself."""
    entries = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative != MANIFEST:
            entries[relative] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return entries


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    atomic_write(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{root} is not an mlpack artifact (no {MANIFEST})",
            "pass a folder written by `mlpack build`",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg}", "rebuild the artifact") from exc


def update_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read, change and atomically rewrite the manifest."""
    manifest = read_manifest(root)
    change(manifest)
    write_manifest(root, manifest)
    return manifest


def verify_files(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems between the manifest's file list and the folder, empty when they agree."""
    recorded = manifest.get("files", {})
    actual = file_entries(root)
    problems = [f"missing: {p}" for p in sorted(set(recorded) - set(actual))]
    problems += [f"not in manifest: {p}" for p in sorted(set(actual) - set(recorded))]
    problems += [
        f"changed: {p}" for p in sorted(set(recorded) & set(actual))
        if recorded[p]["sha256"] != actual[p]["sha256"]
    ]
    return problems
