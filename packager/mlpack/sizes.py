"""One way to write a size for people: the terminal, report.md and errors all use it."""

from __future__ import annotations

_UNITS = ("KB", "MB", "GB", "TB")


def format_size(n: float) -> str:
    """Bytes in binary units (1 KB = 1024 bytes), one decimal: 1.5 KB, 40.3 MB."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in _UNITS:
        n /= 1024
        if n < 1024 or unit == _UNITS[-1]:
            break
    return f"{n:.1f} {unit}"
