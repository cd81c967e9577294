"""The short report printed at the end of a build: what was built, sizes, where."""

from __future__ import annotations

import os
from pathlib import Path

from .build import BuildResult
from .limits import LAMBDA_ZIP_LIMIT_TEXT
from .manifest import Manifest
from .sizes import format_size


def _folder_size(manifest: Manifest, prefix: str) -> int:
    return sum(e.size for p, e in manifest.files.items() if p.startswith(prefix + "/"))


def build_summary(result: BuildResult) -> str:
    m = result.manifest
    where = os.path.relpath(result.path) if Path.cwd() in result.path.parents else str(result.path)
    source, model = m.model.source, m.model
    lines = [
        f"Built {m.artifact} ({m.target.name}, {m.platform}) in {where}",
        f"  model      {format_size(model.size_bytes)} ({model.variant}; source {format_size(source.size_bytes)})",
    ]
    if m.bento is not None:
        lines.append(f"  bento      {m.bento.tag} ({format_size(_folder_size(m, m.bento.path))})")
    if m.lambda_ is not None:
        cold = m.lambda_.cold_start
        zip_size = m.files[m.lambda_.zip].size
        lines.append(f"  lambda     {m.lambda_.zip} ({format_size(zip_size)} of {LAMBDA_ZIP_LIMIT_TEXT})")
        if cold.seconds is not None:
            lines.append(f"  cold start {cold.seconds:.2f} s, peak memory {cold.peak_rss_mb:.0f} MB")
        else:
            lines.append(f"  cold start {cold.note}")
    for folder in ("container", "agent", "iac"):
        count = sum(1 for p in m.files if p.startswith(folder + "/"))
        if count:
            lines.append(f"  {folder:<10} {count} files")
    lines.append(f"  report     {os.path.join(where, 'report.html')}  (chosen: {m.optimization.chosen})")
    return "\n".join(lines)
