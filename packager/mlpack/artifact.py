"""The artifact folder, through one type: the only way any command reads or writes manifest.json.

    artifact = Artifact.open(path)            # parse and validate the manifest
    artifact.require_intact("deployed")       # every file matches its recorded sha256
    artifact.update(lambda m: ...)            # change the manifest, rewritten atomically

`mlpack build` writes a new one with `Artifact.create`, last, after every other file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from .errors import InputError
from .fsutil import atomic_write
from .manifest import IMAGE_SBOM, MANIFEST, REPORT_FILES, SCHEMA_VERSION, SIGNATURE, FileEntry, Manifest
from .model_info import sha256_file

REBUILD = "rebuild the artifact with `mlpack build`"


def file_entries(root: Path, prefix: str = "") -> dict[str, FileEntry]:
    """sha256 and size of every file under root/prefix, by artifact path: all but the manifest, the
    signature, the image's SBOM and the reports (measurements, which differ between rebuilds)."""
    base = root / prefix if prefix else root
    entries = {}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative not in (MANIFEST, SIGNATURE, IMAGE_SBOM, *REPORT_FILES):
            entries[relative] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
    return entries


def parse_manifest(raw: Any, source: str = MANIFEST) -> Manifest:
    """Validate a manifest's JSON; a problem is one line naming the key at fault."""
    if not isinstance(raw, dict):
        raise InputError(f"{source} is not a JSON object", REBUILD)
    version = raw.get("schema_version")
    if version is None:
        raise InputError(f"{source} has no schema_version: it was written by an mlpack older than this one's "
                         f"schema {SCHEMA_VERSION}", REBUILD)
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise InputError(
            f"{source} has schema_version {version!r}; this mlpack reads schema {SCHEMA_VERSION}",
            "upgrade mlpack (pip install -U mlpack)" if newer else REBUILD,
        )
    try:
        # The target is a snapshot: it is checked as data, not against this installation.
        return Manifest.model_validate(raw, context={"snapshot": True})
    except ValidationError as exc:
        item = exc.errors()[0]
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"{source} has an invalid {key}: {item['msg']}{more}", REBUILD) from exc


class Artifact:
    """An artifact folder and its validated manifest."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(cls, root: Path) -> Artifact:
        root = Path(root).expanduser().resolve()
        path = root / MANIFEST
        if not path.is_file():
            raise InputError(f"{root} is not an mlpack artifact (no {MANIFEST})",
                             "pass a folder written by `mlpack build`")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON: {getattr(exc, 'msg', exc)}", REBUILD) from exc
        return cls(root, parse_manifest(raw, f"{root.name}/{MANIFEST}"))

    @classmethod
    def create(cls, root: Path, manifest: Manifest) -> Artifact:
        """Hash every file in `root` into the manifest and write it: the last step of a build."""
        manifest = manifest.model_copy(update={"files": file_entries(root)})
        artifact = cls(root, manifest)
        artifact._write()
        return artifact

    @property
    def name(self) -> str:
        return self.root.name

    def path(self, relative: str) -> Path:
        return self.root / relative

    def problems(self) -> list[str]:
        """Differences between the recorded files and the folder; empty when they agree."""
        recorded = self.manifest.files
        actual = file_entries(self.root)
        problems = [f"missing: {p}" for p in sorted(set(recorded) - set(actual))]
        problems += [f"not in manifest: {p}" for p in sorted(set(actual) - set(recorded))]
        problems += [f"changed: {p}" for p in sorted(set(recorded) & set(actual))
                     if recorded[p].sha256 != actual[p].sha256]
        return problems

    def require_intact(self, action: str) -> Artifact:
        """Refuse an artifact whose files no longer match what was built and measured."""
        problems = self.problems()
        if problems:
            shown = ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise InputError(f"{self.name} does not match its manifest.json ({shown}); "
                             f"a changed artifact is never {action}", "rebuild it with `mlpack build`")
        return self

    def update(self, change: Callable[[Manifest], None]) -> Manifest:
        """Apply `change` to a copy of the manifest as it is on disk now, then rewrite it atomically.

        `change` mutates the copy (assignments are validated); the file is only replaced
        once the whole change succeeded, so a failing command leaves the manifest as it was.
        """
        current = Artifact.open(self.root).manifest
        draft = current.model_copy(deep=True)
        change(draft)
        self.manifest = parse_manifest(json.loads(draft.to_json()), f"{self.name}/{MANIFEST}")
        self._write()
        return self.manifest

    def refresh_files(self, manifest: Manifest, prefix: str) -> None:
        """Inside `update`: record the files under `prefix` (a folder) as they are now."""
        kept = {p: e for p, e in manifest.files.items() if not p.startswith(f"{prefix}/")}
        manifest.files = dict(sorted({**kept, **file_entries(self.root, prefix)}.items()))

    def _write(self) -> None:
        atomic_write(self.root / MANIFEST, self.manifest.to_json())
