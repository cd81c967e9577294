"""report.md's Lambda section: what the zip holds and left out, and its measured cold start."""

from __future__ import annotations

from ..build.plan import MEMORY_HEADROOM, MIN_MEMORY_MB
from .prune import prune_rules
from ..limits import LAMBDA_UNZIPPED_LIMIT_TEXT, LAMBDA_ZIP_LIMIT_TEXT
from ..manifest import ColdStart, LambdaSection, Manifest
from ..sizes import format_size


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def lambda_markdown(manifest: Manifest, zip_bytes: int, cold: ColdStart | None) -> str:
    """`cold`: the step's measurement (it lives in the reports, not in the manifest)."""
    section: LambdaSection = manifest.lambda_
    unzipped = f", {format_size(section.unzipped_bytes)} unzipped (limit {LAMBDA_UNZIPPED_LIMIT_TEXT})" \
        if section.unzipped_bytes is not None else ""
    lines = [
        "", "## Lambda package", "",
        f"- `{section.zip}`: {format_size(zip_bytes)} (limit {LAMBDA_ZIP_LIMIT_TEXT}){unzipped}",
        "- bytecode: " + (f"`{section.bytecode}` (compiled at build; nothing compiles at a cold start)"
                          if section.bytecode else "none (no interpreter of the function's Python here): "
                          "every cold start compiles the modules from source"),
        f"- SnapStart: {'on (published versions, alias `live`)' if section.snapstart else 'off'}",
    ]
    if section.pruned:
        why = {rule.kind: rule.why for rule in prune_rules(manifest.target)}
        lines += ["", "Left out of the packages (the handler never imports them):", "",
                  "| kind | files | size | why |", "|---|---:|---:|---|"]
        lines += [f"| {p.kind} | {p.files} | {format_size(p.bytes)} | {why.get(p.kind, '')} |" for p in section.pruned]
    lines += ["", "### Cold start", ""]
    if cold is None:
        lines.append("Not measured.")
    elif cold.seconds is None:
        lines.append(f"{cold.note}.")
    else:
        lines += [
            cold.note + ".", "",
            "| | median | p90 |", "|---|---:|---:|",
            f"| init + first invoke | {_ms(cold.seconds)} | {_ms(cold.p90_seconds)} |",
            f"| init | {_ms(cold.init_seconds)} | |",
            f"| first invoke | {_ms(cold.invoke_seconds)} | |",
            "",
            f"Peak memory {cold.peak_rss_mb:.0f} MB; the function asks for {manifest.memory_mb} MB "
            f"({MEMORY_HEADROOM:g} times the peak, at least {MIN_MEMORY_MB} MB).",
        ]
        if cold.imports:
            lines += ["", f"The {len(cold.imports)} most expensive imports (`python -X importtime`, each package's "
                      "modules' own time; importtime itself slows them):", "",
                      "| package | import time | modules |", "|---|---:|---:|"]
            lines += [f"| `{i.package}` | {_ms(i.seconds)} | {i.modules} |" for i in cold.imports]
    return "\n".join(lines) + "\n"
