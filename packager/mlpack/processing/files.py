"""The files a processing step ships: where they come from, and their entry in the section."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..model.info import sha256_file
from .schema import PROCESSING_DIR, FileRef

Source = Path | bytes  # a file to copy, or the bytes the build wrote for it (e.g. the model's labels)


def file_ref(source: Source, name: str) -> FileRef:
    """The entry for `source` as it will ship: processing/<name>, with its sha256 and size."""
    if isinstance(source, bytes):
        return FileRef(path=f"{PROCESSING_DIR}/{name}", sha256=hashlib.sha256(source).hexdigest(), size=len(source))
    return FileRef(path=f"{PROCESSING_DIR}/{name}", sha256=sha256_file(source), size=source.stat().st_size)


def copy_files(sources: dict[str, Source], root: Path) -> None:
    """Put each source at its artifact path under `root` (an artifact, an app folder, a scratch folder)."""
    for path, source in sources.items():
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            dest.write_bytes(source)
        else:
            shutil.copyfile(source, dest)
