"""report.html: the optimization report as one self-contained page people look at.

Python decides every word and coordinate here (`ReportPage`); `templates/report/
report.html.j2` only formats it. The page loads nothing: the chart is inline SVG, the
style inline CSS, no script, and a Content-Security-Policy that forbids any request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..sizes import format_size
from .chart import Chart, build_chart
from .report import OptimizationResult

if TYPE_CHECKING:
    from ..manifest import ColdStart, Manifest
    from ..targets import Target

REPORT_HTML = "report.html"
TEMPLATE = "report/report.html.j2"


def report_files(folder: Path) -> dict[str, str]:
    """Where a build's or an optimize run's three reports are (the `--json` summaries say)."""
    return {"html": str(folder / REPORT_HTML), "markdown": str(folder / "report.md"),
            "json": str(folder / "report.json")}


@dataclass(frozen=True)
class About:
    """What the page says about where the model goes: target, versions, Lambda figures."""

    title: str  # the artifact's name, or the model's for `mlpack optimize`
    target: str
    platform: str
    mlpack_version: str
    versions: str = ""  # the versions the model was measured with, which ship pinned
    serving: list[tuple[str, str]] = field(default_factory=list)  # e.g. the Lambda cold start

    @classmethod
    def from_manifest(cls, manifest: Manifest, zip_bytes: int | None = None, cold: ColdStart | None = None,
                      drift_note: str = "") -> About:
        """The build's facts; `cold` is the Lambda cold start the build measured (report.json
        has it too; the manifest does not, as a measurement); `drift_note` what the build's
        drift profile holds, or why there is none (mlpack.monitoring.drift)."""
        from ..limits import LAMBDA_ZIP_LIMIT_TEXT

        serving = []
        if manifest.lambda_ is not None:
            cold = cold or manifest.lambda_.cold_start
            if cold is not None and cold.seconds is not None:
                serving.append(("cold start", f"{cold.seconds:.2f} s ({cold.note})"))
                if cold.peak_rss_mb is not None:
                    serving.append(("peak memory at cold start", f"{cold.peak_rss_mb:.0f} MB"))
            elif cold is not None:
                serving.append(("cold start", cold.note))
            if zip_bytes is not None:
                serving.append((manifest.lambda_.zip, f"{format_size(zip_bytes)} of {LAMBDA_ZIP_LIMIT_TEXT}"))
            serving.append(("memory size", f"{manifest.memory_mb} MB"))
        if drift_note:
            serving.append(("drift", drift_note))
        return cls(
            title=manifest.artifact, target=manifest.target.name, platform=manifest.platform,
            mlpack_version=manifest.mlpack_version, versions=_versions(manifest.versions.model_dump()),
            serving=serving,
        )

    @classmethod
    def for_target(cls, title: str, target: Target) -> About:
        """`mlpack optimize`: no artifact yet, so the versions a build here would pin."""
        from .. import __version__
        from ..build.plan import host_versions

        return cls(title=title, target=target.name, platform=target.platform.oci, mlpack_version=__version__,
                   versions=_versions(host_versions(target).model_dump()))


def _versions(versions: dict[str, str | None]) -> str:
    pythons = {"python", "build_python"}
    packages = ", ".join(f"{name} {value}" for name, value in versions.items() if value and name not in pythons)
    built = f" (built with {versions['build_python']})" if versions.get("build_python") else ""
    return f"{packages}; python {versions['python']} on the target{built}"


@dataclass(frozen=True)
class Row:
    cells: list[str]
    chosen: bool
    failed: bool
    reference: bool


@dataclass(frozen=True)
class ReportPage:
    title: str
    subtitle: str
    chosen: str
    chosen_summary: str
    why: str
    chart: Chart
    header: list[str]
    rows: list[Row]
    numeric: list[bool]  # per column: right-aligned figures
    facts: list[tuple[str, str]]
    recipes: list[tuple[str, str, str]]  # (variant, how it was made, gate verdict)
    skipped: list[tuple[str, str]]
    notes: list[str]
    gate: list[tuple[str, str]]


def data_text(result: OptimizationResult) -> str:
    """Where accuracy was measured, in words: real or synthetic, and the rows."""
    if not result.gate_rows:
        return f"no data: {result.data_source}"
    kind = "synthetic inputs" if result.synthetic else "real data"
    split = (f"{result.calibration_rows} rows for calibration, {result.gate_rows} held-out rows for the gate"
             if result.calibration_rows != result.gate_rows
             else f"the same {result.gate_rows} rows for calibration and the gate (too few to hold rows out)")
    text = f"{kind}: {result.data_source}; {split}"
    if result.near_ties:
        text += (f"; {result.near_ties} of the gate's rows are near-ties in float and decide no top-1 agreement, "
                 f"which the other {result.gate_rows - result.near_ties} decide")
    if result.synthetic:
        text += (". Synthetic inputs show that a variant computes the same function as float, "
                 "not how it does on your data: pass --calibration FILE.npz")
    return text


def report_page(result: OptimizationResult, about: About) -> ReportPage:
    chosen, base = result.chosen, result.baseline
    table = result._rows()
    header, body = table[0], table[1:]
    rows = [Row(cells, c is chosen, not c.passed, c.reference) for c, cells in zip(result.candidates, body)]
    numeric = [i not in (0, len(header) - 1, len(header) - 2) for i in range(len(header))]
    facts = [
        ("target", f"{about.target} ({about.platform})"),
        ("policy", f"{result.policy} variant that passes the accuracy gate"
                   + (f"; ties within {result.tolerance:.0%}" if result.tolerance else "")),
        ("accuracy measured on", data_text(result)),
        ("latency", result.latency_note or f"measured with {result.measured_on}"),
        *about.serving,
        ("versions", about.versions),
        ("report by", f"mlpack {about.mlpack_version}"),
    ]
    return ReportPage(
        title=f"{about.title}: optimization report",
        subtitle=f"{about.target} ({about.platform}), {len(result.candidates)} candidates",
        chosen=chosen.name,
        chosen_summary=(f"{format_size(chosen.size_bytes)}, {chosen.size_bytes / base.size_bytes:.2f}x the float "
                        f"size; {chosen.accuracy_text()}"),
        why=_sentence(result.why) + (f" {_sentence(result.headline)}" if result.headline else ""),
        chart=build_chart(result),
        header=header, rows=rows, numeric=numeric, facts=facts,
        recipes=[(c.name, c.recipe, ("pass" if c.passed else "FAIL") + (f": {c.reason}" if c.reason else "")
                  + (f"; held back: {c.held}" if c.held else "")) for c in result.candidates],
        skipped=list(result.skipped),
        notes=list(result.notes),
        gate=[(k, str(v)) for k, v in result.gate.model_dump().items()],
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def to_html(result: OptimizationResult, about: About) -> str:
    from ..render.templates import render_page

    return render_page(TEMPLATE, page=report_page(result, about))
