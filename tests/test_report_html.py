"""report.html: one self-contained page with the candidates, the size/latency chart with
the gate's verdicts and the Pareto front, the pick and why, the data, the target and its
versions (and the cold start for Lambda). Checked as text here and in headless Chromium."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.optimize.chart import build_chart, nice_ticks, pareto_front
from mlpack.optimize.gate import GateSettings
from mlpack.optimize.measure import Latency
from mlpack.optimize.report import Candidate, OptimizationResult
from mlpack.optimize.report_html import About, data_text, to_html

from .agent_harness import free_port, wait_for
from .golden_files import match_golden

GOLDEN = Path(__file__).parent / "golden" / "report"


def candidate(name: str, size: int, p50: tuple[float, float], passed: bool = True, accuracy: float = 0.975,
              reason: str = "meets every threshold", reference: bool = False) -> Candidate:
    latency = {b: Latency(b, ms, ms * 1.5) for b, ms in zip((1, 32), p50)}
    return Candidate(name, Path(f"/work/{name}.onnx"), size, recipe=f"made as {name}", passed=passed,
                     reason=reason, metrics={"accuracy": accuracy, "accuracy_drop": 0.975 - accuracy},
                     quality=1.0 - (0.975 - accuracy), latency=latency, reference=reference)


def fixed_result(**changes) -> OptimizationResult:
    float_ = candidate("float", 204_800, (0.20, 2.0), reason="the reference the others are compared with")
    dynamic = candidate("dynamic-int8", 57_000, (0.12, 1.1), accuracy=0.972)
    smooth = candidate("smooth-int8", 60_000, (0.13, 1.2))
    static = candidate("static-int8", 55_000, (0.10, 0.9), passed=False, accuracy=0.90,
                       reason="accuracy drop 7.50 pt > 0.5 pt <b>bold</b>")
    values = dict(
        candidates=[float_, dynamic, smooth, static], chosen=smooth, target="x86-cpu", policy="fastest",
        data_source="calibration data digits.npz (450 rows)", why="fastest variant that passes the gate",
        gate=GateSettings(), measured_on="CPUExecutionProvider", tolerance=0.1, synthetic=False,
        gate_rows=338, calibration_rows=112, notes=["a note"], skipped=[("mixed-int8", "not needed")],
    )
    values.update(changes)
    return OptimizationResult(**values)


ABOUT = About(title="digits-x86-cpu", target="x86-cpu", platform="linux/amd64", mlpack_version="0.0.0-golden",
              versions="onnxruntime 1.0.0, numpy 2.0.0; python 3.11 on the target")


def test_the_page_matches_its_golden_file() -> None:
    match_golden(GOLDEN, {"report.html": to_html(fixed_result(), ABOUT)}, "report.html")


def test_the_page_loads_nothing_and_runs_no_script() -> None:
    html = to_html(fixed_result(), ABOUT)
    assert "default-src 'none'" in html  # the browser refuses any request the page might make
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|\bhref=|url\(|@import", html, re.I)
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only


def test_the_pick_is_highlighted_with_its_reason_and_a_failed_variant_is_marked() -> None:
    html = to_html(fixed_result(), ABOUT)
    assert '<span class="name">smooth-int8</span>' in html
    assert "Fastest variant that passes the gate." in html
    assert re.search(r'<tr class="chosen"><td>smooth-int8 \*</td>', html)
    assert re.search(r'<tr class=" failed"><td>static-int8</td>', html)
    chosen = re.search(r'<g class="point" data-variant="smooth-int8">(.*?)</g>', html, re.S).group(1)
    assert 'class="chosen"' in chosen and "smooth-int8 (shipped)" in chosen
    failed = re.search(r'<g class="point" data-variant="static-int8">(.*?)</g>', html, re.S).group(1)
    assert '<path class="fail"' in failed and "<circle" not in failed


def test_text_from_the_model_and_the_gate_is_escaped() -> None:
    html = to_html(fixed_result(), ABOUT)
    assert "<b>bold</b>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_the_chart_places_every_candidate_by_latency_and_size() -> None:
    chart = build_chart(fixed_result())
    points = {p.name: p for p in chart.points}
    assert set(points) == {"float", "dynamic-int8", "smooth-int8", "static-int8"}
    # smaller is lower down (SVG y grows downwards, size from 0 upwards), faster is further left
    assert points["dynamic-int8"].y > points["float"].y
    assert points["static-int8"].x < points["dynamic-int8"].x < points["smooth-int8"].x < points["float"].x
    for p in chart.points:
        assert chart.left <= p.x <= chart.right and chart.top <= p.y <= chart.bottom
    assert chart.band is not None and "within 10% of the fastest" in chart.band.label


def test_labels_do_not_overlap() -> None:
    chart = build_chart(fixed_result())
    boxes = []
    for p in chart.points:
        width = 7.2 * len(p.label)
        left = p.label_x - width if p.anchor == "end" else p.label_x
        boxes.append((left, p.label_y - 12, left + width, p.label_y + 3))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_the_pareto_front_holds_the_passing_variants_nothing_beats() -> None:
    result = fixed_result()
    x = {c.name: sum(v.p50_ms for v in c.latency.values()) for c in result.candidates}
    front = {c.name for c in pareto_front(result.candidates, x)}
    # float: smooth-int8 is smaller, faster and as accurate; static-int8 failed the gate.
    # dynamic-int8 is smaller and faster than smooth-int8, but less accurate: both stay.
    assert front == {"dynamic-int8", "smooth-int8"}
    assert {p.name for p in build_chart(result).points if p.on_front} == front


def test_without_latency_on_the_target_the_chart_plots_size_against_accuracy() -> None:
    result = fixed_result(latency_note="not measured on target: CUDAExecutionProvider is not available on this host")
    for c in result.candidates:
        c.latency = {}
    chart = build_chart(result)
    assert chart.title == "Size against accuracy"
    assert "CUDAExecutionProvider is not available" in chart.caption
    assert chart.band is None


@pytest.mark.parametrize(("high", "low", "ticks"), [
    (1.07, 0.0, [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]),
    (1.12, 0.86, [0.8, 0.9, 1.0, 1.1, 1.2]),
    (240.0, 0.0, [0.0, 50.0, 100.0, 150.0, 200.0, 250.0]),
])
def test_axis_ticks_are_round_figures_covering_the_range(high: float, low: float, ticks: list[float]) -> None:
    assert nice_ticks(high, low=low) == ticks


def test_the_data_source_says_real_or_synthetic_and_the_rows() -> None:
    assert data_text(fixed_result()) == ("real data: calibration data digits.npz (450 rows); 112 rows for "
                                         "calibration, 338 held-out rows for the gate")
    synthetic = data_text(fixed_result(synthetic=True, data_source="synthetic inputs (64 rows made from the "
                                       "signature)", gate_rows=16, calibration_rows=16))
    assert synthetic.startswith("synthetic inputs: synthetic inputs (64 rows")
    assert "the same 16 rows for calibration and the gate" in synthetic
    assert "pass --calibration FILE.npz" in synthetic


def test_a_lambda_artifact_report_shows_its_cold_start_and_versions(demo_artifact) -> None:
    built = demo_artifact("aws-lambda")
    html = (built.path / "report.html").read_text()
    cold = built.cold_start  # a measurement: in the reports, not the manifest
    assert "<dt>cold start</dt>" in html
    assert (f"{cold.seconds:.2f} s" if cold.seconds is not None else cold.note) in html
    assert f"onnxruntime {built.manifest.versions.onnxruntime}" in html
    assert "report.html" not in built.manifest.files  # like report.md: signed, not hashed


def test_mlpack_report_prints_the_path_and_open_opens_it(demo_artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    path = demo_artifact("x86-cpu").path
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 0 and result.stdout.strip() == str(path / "report.html") and not opened
    result = CliRunner().invoke(app, ["report", str(path), "--open"])
    assert result.exit_code == 0 and opened == [(path / "report.html").as_uri()]


def test_report_open_without_a_browser_prints_a_way_to_serve_the_page_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "my model-optimized"  # a space: the printed command quotes the folder
    folder.mkdir()
    (folder / "report.html").write_text("<!doctype html><title>report</title>")
    monkeypatch.setattr("webbrowser.open", lambda *a, **k: False)  # a server without a desktop
    result = CliRunner().invoke(app, ["report", str(folder), "--open"])
    assert result.exit_code == 0  # the report is there; only the browser is missing
    assert result.stdout == f"{folder / 'report.html'}\n"
    note = result.stderr.splitlines()
    assert note[0] == "note: no web browser could be started here; serve the page and open it from a browser:"
    command, url = note[1].strip(), re.search(r"open (http://\S+)", note[2]).group(1)
    assert command.startswith("python3 -m http.server 8000 --bind 127.0.0.1 --directory ")
    assert url == "http://127.0.0.1:8000/report.html" and "ssh -L 8000:127.0.0.1:8000" in note[2]

    port = str(free_port())  # the line as printed, on a port free here
    argv = [sys.executable if word == "python3" else port if word == "8000" else word for word in shlex.split(command)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = url.replace("8000", port)
        wait_for(lambda: _answers(page), 20, what="python -m http.server to answer")
        assert httpx.get(page).text == (folder / "report.html").read_text()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_mlpack_report_on_a_folder_without_a_report_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path} has no report.html; pass a folder written by `mlpack build` "
                             "or `mlpack optimize`\n")


@pytest.mark.slow
@pytest.mark.requires_tool("chromium", hint="apt-get install chromium (Debian's headless browser)")
@pytest.mark.requires_tool("PIL", module=True, hint="pillow, a test dependency (make setup)")
def test_the_demo_report_renders_in_headless_chromium_with_its_chart(demo_artifact, tmp_path: Path) -> None:
    from PIL import Image

    from .chromium import visit

    built = demo_artifact("x86-cpu")
    page = (built.path / "report.html").as_uri()
    count = "document.querySelectorAll('#chart .point').length"
    box = "(() => { const r = document.querySelector('#chart').getBoundingClientRect(); return [r.width, r.height]; })()"
    rows = "document.querySelectorAll('#candidates tbody tr').length"
    seen = visit(page, [count, box, rows, "document.querySelector('#pick .name').textContent"])
    (tmp_path / "report.png").write_bytes(seen.screenshot)  # kept for a look: pytest's tmp folder

    assert seen.requests == [page], "the page asked for something besides itself"
    assert seen.errors == []
    candidates = len(built.optimization.candidates)
    assert seen.values[count] == candidates and seen.values[rows] == candidates
    assert seen.values[box][0] > 600 and seen.values[box][1] > 300
    assert seen.values["document.querySelector('#pick .name').textContent"] == built.optimization.chosen.name

    image = Image.open(io.BytesIO(seen.screenshot)).convert("RGB")
    assert image.size == (1200, 1400)
    colors = image.getcolors(maxcolors=image.width * image.height)  # [(count, (r, g, b)), ...]
    ink = sum(n for n, (r, g, b) in colors if r + g + b < 600) / (image.width * image.height)
    assert ink > 0.01, "the screenshot is blank"
    assert any(abs(r - 0x1F) < 16 and abs(g - 0x7A) < 16 and abs(b - 0x4D) < 16 for _, (r, g, b) in colors), (
        "no trace of the pick's green: the page did not render as styled")
