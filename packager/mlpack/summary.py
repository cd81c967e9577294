"""The short report printed at the end of a build: what was built, sizes, where."""

from __future__ import annotations

import os
from pathlib import Path

from .build import BuildResult


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def _folder_size(manifest: dict, prefix: str) -> int:
    return sum(e["size"] for p, e in manifest["files"].items() if p.startswith(prefix + "/"))


def build_summary(result: BuildResult) -> str:
    m = result.manifest
    where = os.path.relpath(result.path) if Path.cwd() in result.path.parents else str(result.path)
    source, model = m["model"]["source"], m["model"]
    lines = [
        f"Built {m['artifact']} ({m['target']}, {m['platform']}) in {where}",
        f"  model      {_size(model['size_bytes'])} ({model['variant']}; source {_size(source['size_bytes'])})",
    ]
    if "bento" in m:
        lines.append(f"  bento      {m['bento']['tag']} ({_size(_folder_size(m, 'bento'))})")
    if "lambda" in m:
        cold = m["lambda"]["cold_start"]
        zip_size = m["files"][m["lambda"]["zip"]]["size"]
        lines.append(f"  lambda     {m['lambda']['zip']} ({_size(zip_size)} of 50 MB)")
        if cold["seconds"] is not None:
            lines.append(f"  cold start {cold['seconds']:.2f} s, peak memory {cold['peak_rss_mb']:.0f} MB")
        else:
            lines.append(f"  cold start {cold['note']}")
    for folder in ("container", "agent", "iac"):
        count = sum(1 for p in m["files"] if p.startswith(folder + "/"))
        if count:
            lines.append(f"  {folder:<10} {count} files")
    lines.append(f"  report     {os.path.join(where, 'report.md')}  (chosen: {m['optimization']['chosen']})")
    return "\n".join(lines)
