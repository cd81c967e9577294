"""The short report printed at the end of a build: what was built, sizes, where."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .run import BuildResult
from ..limits import LAMBDA_ZIP_LIMIT_TEXT
from ..manifest import Manifest
from ..optimize.report_html import report_files
from ..processing.describe import processing_summary
from ..sizes import format_size


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
    if result.optimization.headline:  # e.g. int8 held back for lack of real data, and how to get it
        lines.append(f"  optimizer  {result.optimization.headline}")
    lines += processing_summary(m)
    if m.bento is not None:
        lines.append(f"  bento      {m.bento.tag} ({format_size(_folder_size(m, m.bento.path))})")
    if m.lambda_ is not None:
        cold = result.cold_start
        zip_size = m.files[m.lambda_.zip].size
        lines.append(f"  lambda     {m.lambda_.zip} ({format_size(zip_size)} of {LAMBDA_ZIP_LIMIT_TEXT})")
        if cold is not None and cold.seconds is not None:
            p90 = f" (p90 {cold.p90_seconds:.2f} s)" if cold.p90_seconds is not None else ""
            emulated = ", under emulation" if cold.emulated else ""
            lines.append(f"  cold start {cold.seconds:.2f} s{p90}{emulated}, peak memory {cold.peak_rss_mb:.0f} MB, "
                         f"asks for {m.memory_mb} MB")
        elif cold is not None:
            lines.append(f"  cold start {cold.note}")
    if m.drift is not None:
        lines.append(f"  drift      {m.drift.input_features} input and {m.drift.output_features} output features "
                     f"({m.drift.profile}, {format_size(m.files[m.drift.profile].size)})")
    for folder in ("container", "agent", "iac"):
        count = sum(1 for p in m.files if p.startswith(folder + "/"))
        if count:
            lines.append(f"  {folder:<10} {count} files")
    lines.append(f"  report     {os.path.join(where, 'report.html')}  (chosen: {m.optimization.chosen})")
    return "\n".join(lines)


def build_json(result: BuildResult) -> dict[str, Any]:
    """`mlpack build --json`: what was built and where, for CI."""
    m, cold = result.manifest, result.cold_start
    zip_bytes = m.files[m.lambda_.zip].size if m.lambda_ is not None else None
    return {
        "artifact": str(result.path),
        "name": m.artifact,
        "target": m.target.name,
        "platform": m.platform,
        "model": {"file": m.model.file, "sha256": m.model.sha256, "size_bytes": m.model.size_bytes,
                  "variant": m.model.variant, "source_size_bytes": m.model.source.size_bytes},
        "optimization": {"chosen": m.optimization.chosen, "why": m.optimization.why,
                         "data_source": m.optimization.data_source},
        "bento": {"tag": m.bento.tag, "path": m.bento.path} if m.bento is not None else None,
        "lambda": None if m.lambda_ is None else {
            "zip": m.lambda_.zip, "zip_bytes": zip_bytes, "memory_mb": m.memory_mb,
            "cold_start_s": cold.seconds if cold else None, "peak_rss_mb": cold.peak_rss_mb if cold else None},
        "image": {"repository": m.image.repository, "tag": m.image.tag, "id": m.image.id},
        "drift": m.drift.model_dump() if m.drift is not None else None,
        "files": len(m.files),
        "report": report_files(result.path),
        "steps": [{"name": t.name, "seconds": t.seconds} for t in result.timings],
    }
