"""BENCHMARKS.md is shared: each benchmark script owns one "## ..." section of it."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(heading: str, text: str, path: Path = Path("BENCHMARKS.md")) -> None:
    """Replace (or append) the section that starts with `## {heading}`, keeping the others.

    `text` is the whole section, its heading line included.
    """
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")
