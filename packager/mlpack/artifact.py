"""The artifact folder, through one type: the only way any command reads or writes manifest.json.

    artifact = Artifact.open(path)            # parse and validate the manifest
    artifact.require_intact("deployed")       # every file matches its recorded sha256
    artifact.update(lambda m: ...)            # change the manifest, rewritten atomically
    artifact.record(lambda h: ...)            # add to history.json (deploys, rollouts)

`mlpack build` writes a new one with `Artifact.create`, last, after every other file.

manifest.json is signed with the rest (docs/security.md): `update` removes the signature
of a signed artifact before it changes the manifest, and says so (`resign_note`), since
the signature no longer covers what the manifest says. `record` writes history.json,
which the signature leaves out, so deploys and rollouts keep a signature valid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from .errors import InputError
from .fsutil import atomic_write
from .manifest import (
    HISTORY, IMAGE_SBOM, MANIFEST, REPORT_FILES, SCHEMA_VERSION, SIGNATURE, FileEntry, History, Manifest,
)
from .model.info import sha256_file
from .paths import inside

REBUILD = "rebuild the artifact with `mlpack build`"
# Files manifest.json does not hash, and why: shown by `mlpack verify`.
NOT_HASHED = {
    **{name: "the build's measurements, which differ between rebuilds of the same inputs; a signature covers them"
       for name in REPORT_FILES},
    IMAGE_SBOM: "written by `mlpack image` after the build; manifest.json holds its sha256 (image.sbom_sha256), "
                "checked here; a signature made after `mlpack image` covers it",
    HISTORY: "where the artifact was deployed and rolled out: records no command acts on, never signed",
    SIGNATURE: "the signature itself",
}
_UNLISTED = (MANIFEST, SIGNATURE, IMAGE_SBOM, HISTORY, *REPORT_FILES)


def _walk(root: Path, prefix: str = "") -> tuple[list[Path], list[Path]]:
    """The files and the symbolic links under root/prefix (links are listed, never followed)."""
    files, links = [], []
    for folder, dirs, names in os.walk(root / prefix if prefix else root):
        for name in (*dirs, *names):
            path = Path(folder, name)
            if path.is_symlink():
                links.append(path)
            elif name in names:
                files.append(path)
    return sorted(files), sorted(links)


def file_entries(root: Path, prefix: str = "") -> dict[str, FileEntry]:
    """sha256 and size of every file under root/prefix, by artifact path: all but the manifest, the
    signature, the image's SBOM, the history and the reports (measurements, which differ between
    rebuilds). Links are not files of an artifact: `Artifact.problems` names them."""
    entries = {}
    for path in _walk(root, prefix)[0]:
        relative = path.relative_to(root).as_posix()
        if relative not in _UNLISTED:
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
        self.signature_removed = False  # by `update`: the artifact must be signed again

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
        """A path the manifest (or a command) names, refused if it leads out of the artifact."""
        return inside(self.root, relative)

    def problems(self) -> list[str]:
        """Differences between the recorded files and the folder; empty when they agree."""
        recorded = self.manifest.files
        actual = file_entries(self.root)
        problems = [f"missing: {p}" for p in sorted(set(recorded) - set(actual))]
        problems += [f"not in manifest: {p}" for p in sorted(set(actual) - set(recorded))]
        problems += [f"changed: {p}" for p in sorted(set(recorded) & set(actual))
                     if recorded[p].sha256 != actual[p].sha256]
        problems += [f"link: {link.relative_to(self.root).as_posix()} -> {os.readlink(link)} (an artifact holds "
                     "no links)" for link in _walk(self.root)[1]]
        sbom, recorded_sbom = self.root / IMAGE_SBOM, self.manifest.image.sbom_sha256
        if sbom.is_file() and not sbom.is_symlink() and sha256_file(sbom) != recorded_sbom:
            problems.append(f"changed: {IMAGE_SBOM} (not the image.sbom_sha256 `mlpack image` recorded)")
        return problems

    def unhashed(self) -> dict[str, str]:
        """The files of the folder that manifest.json does not hash, with the reason for each."""
        return {name: why for name, why in NOT_HASHED.items() if (self.root / name).is_file()}

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
        A signed artifact loses its signature first (see `unsign`): a crash in between
        leaves an unsigned artifact, never a signature over another manifest.
        """
        current = Artifact.open(self.root).manifest
        draft = current.model_copy(deep=True)
        change(draft)
        manifest = parse_manifest(json.loads(draft.to_json()), f"{self.name}/{MANIFEST}")
        self.unsign()
        self.manifest = manifest
        self._write()
        return self.manifest

    def unsign(self) -> None:
        """Remove signature.sig before a command changes a signed file (manifest.json, iac/,
        image.cdx.json): it would no longer verify, and a stale signature reads as tampering."""
        signature = self.root / SIGNATURE
        if signature.is_file() or signature.is_symlink():
            signature.unlink()
            self.signature_removed = True

    def resign_note(self) -> str | None:
        """The line a command prints when it removed the signature; None when it did not."""
        if not self.signature_removed:
            return None
        return (f"{self.name} was signed; manifest.json changed, so {SIGNATURE} no longer covered it and was "
                f"removed: sign it again (mlpack sign {self.root} --key PRIVATE.pem) before a deploy, rollout or "
                "push that checks a key")

    def record(self, change: Callable[[History], None]) -> History:
        """Add to history.json (deploys, rollouts), atomically. The signature leaves it out, so
        a signed artifact stays signed. An unreadable history (edited by hand) starts again."""
        path = self.root / HISTORY
        try:
            history = History.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            history = History()
        change(history)
        atomic_write(path, history.to_json())
        return history

    def history(self) -> History:
        path = self.root / HISTORY
        return History.model_validate_json(path.read_bytes()) if path.is_file() else History()

    def refresh_files(self, manifest: Manifest, prefix: str) -> None:
        """Inside `update`: record the files under `prefix` (a folder) as they are now."""
        kept = {p: e for p, e in manifest.files.items() if not p.startswith(f"{prefix}/")}
        manifest.files = dict(sorted({**kept, **file_entries(self.root, prefix)}.items()))

    def _write(self) -> None:
        atomic_write(self.root / MANIFEST, self.manifest.to_json())
