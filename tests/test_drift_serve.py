"""Drift, end to end: `mlpack serve` runs the demo as in production; traffic drawn from the
calibration data's distribution (its rows resampled) keeps every drift score under its
threshold, and the same digits with inverted pixels push the input drift over it within
the agent's window, after which a real Prometheus, loaded with the artifact's generated
rules, fires the drift alerts (its alerts API says so).

Not the digits the demo was trained on: the model is more confident on those than on
held-out rows, and its output drift score says so (0.27 for the top probability).

The rules are rendered from the artifact's manifest with `[drift] sustained = "5s"`, the
same code path `mlpack build --drift sustained=5s` takes, so that "sustained" fits a test.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlpack.artifact import Artifact
from mlpack.render.context import RenderContext
from mlpack.render.templates import render_group

from .agent_harness import PrometheusServer, free_port, wait_for
from .served_apps import start_serve

pytestmark = [pytest.mark.slow, pytest.mark.requires_tool("prometheus", hint="apt-get install prometheus")]
ROWS_PER_REQUEST = 10
DRIFT_ALERTS = {"MlpackInputDrift", "MlpackOutputDrift", "MlpackInputsOutOfRange"}


def calibration_like(rows: int) -> np.ndarray:
    """`rows` drawn with replacement from the demo's calibration data: its distribution."""
    from mlpack.model.demo import demo_model

    with np.load(demo_model()[1]) as data:
        pixels = data["pixels"]
    return pixels[np.random.default_rng(7).choice(len(pixels), rows)]


def agent_drift(agent_port: int) -> dict[str, dict[str, float]]:
    """The agent's drift gauges, by metric and feature, as its /metrics has them now."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{agent_port}/metrics", timeout=5).text
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("mlpack_drift_"):
                found.setdefault(s.name, {})[s.labels.get("feature", "")] = s.value
    return found


def max_input_psi(agent_port: int) -> float:
    psi = agent_drift(agent_port).get("mlpack_drift_psi", {})
    return max((v for k, v in psi.items() if k.startswith("pixels")), default=math.nan)


def firing(prometheus: PrometheusServer) -> set[str]:
    return {a["labels"]["alertname"] for a in prometheus.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"}


def test_shifted_traffic_crosses_the_threshold_within_the_window_and_the_alert_fires(demo_artifact,
                                                                                       tmp_path: Path) -> None:
    artifact = Artifact.open(demo_artifact("x86-cpu").path)
    manifest = artifact.manifest
    assert manifest.drift is not None  # the demo ships its calibration data: it has a profile
    assert artifact.path(manifest.drift.profile).stat().st_size < 10_000  # docs/agent.md: under 10 KB
    assert "| pixels | input | 64 columns, binned |" in (artifact.root / "report.md").read_text()
    settings = manifest.target.drift
    short = manifest.model_copy(update={"target": manifest.target.with_drift(sustained="5s")})
    (tmp_path / "alerts.yaml").write_text(render_group("agent", "agent", RenderContext.from_manifest(short))
                                          ["agent/alerts.yaml"])
    port, agent_port = free_port(), free_port()
    proc, out = start_serve(artifact.root, port, agent_port, tmp_path)
    prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{agent_port}"],
                                  rule_files=[str(tmp_path / "alerts.yaml")])
    predict = f"http://127.0.0.1:{port}/predict"

    def send(rows: np.ndarray) -> None:
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            reply = httpx.post(predict, json={"inputs": {"pixels": rows[start:start + ROWS_PER_REQUEST].tolist()}},
                               timeout=60)
            assert reply.status_code == 200, reply.text

    try:
        wait_for(lambda: "Ctrl-C or SIGTERM" in out.read_text() or proc.poll() is not None, 180, interval_s=0.3,
                 what="mlpack serve to print its URLs")
        assert proc.poll() is None, (tmp_path / "serve.err").read_text()[-3000:]
        assert f"profile {manifest.drift.id}: 64 input and 2 output features" in out.read_text()
        prometheus.start()

        digits = calibration_like(settings.window_rows * 6 // 10)  # 600 rows: past the window's half
        send(digits)
        wait_for(lambda: agent_drift(agent_port).get("mlpack_drift_window_rows", {}).get("") == len(digits), 20,
                 interval_s=0.2, what="the agent to window every row")
        calm = agent_drift(agent_port)
        assert max(calm["mlpack_drift_psi"].values()) < settings.psi_threshold, calm["mlpack_drift_psi"]
        assert calm["mlpack_drift_inputs_out_of_range_ratio"][""] < settings.out_of_range_threshold
        # Prometheus sees the calm scores for longer than `sustained`, and nothing fires.
        scrapes = 'count_over_time(mlpack_drift_psi{feature="pixels[20]"}[1m])'
        wait_for(lambda: (found := prometheus.query(scrapes)) and float(found[0]["value"][1]) >= 10, 40,
                 interval_s=0.5, what="Prometheus to scrape calm scores 10 times")
        alerts = prometheus.api("/api/v1/alerts")["alerts"]
        assert {a["labels"]["alertname"] for a in alerts} & DRIFT_ALERTS == set()  # not even pending

        inverted, shifted_rows = 1 - digits, 0
        while max_input_psi(agent_port) <= settings.psi_threshold and shifted_rows < len(inverted):
            send(inverted[shifted_rows:shifted_rows + 5 * ROWS_PER_REQUEST])
            shifted_rows += 5 * ROWS_PER_REQUEST
            wait_for(lambda: agent_drift(agent_port)["mlpack_drift_rows_total"][""] == len(digits) + shifted_rows, 20,
                     interval_s=0.1, what="the agent to count the shifted rows")
        assert max_input_psi(agent_port) > settings.psi_threshold
        assert shifted_rows < settings.window_rows  # crossed within one window
        send(inverted[shifted_rows:])  # the drift goes on
        fired = wait_for(lambda: firing(prometheus) & DRIFT_ALERTS, 60, interval_s=0.5,
                         what="Prometheus to fire a drift alert")
        assert "MlpackInputDrift" in fired
        wait_for(lambda: "MlpackInputsOutOfRange" in firing(prometheus), 30, interval_s=0.5,
                 what="the out-of-range alert")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        prometheus.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_text_model_drifts_on_sentences_of_another_language_and_length(tmp_path: Path) -> None:
    """The sentence encoder with its tokenizer, calibrated on English sentences: the Bento's
    ServedModel (in this process) reports to the artifact's own agent; the same sentences
    again stay calm, German ones of another length drift in tokens, ids and embeddings."""
    import os

    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress
    from mlpack.runtime import ServedModel

    from .agent_harness import AgentProcess
    from .processing_models import SENTENCES, text_encoder, train_tokenizer, vocab_size

    tokenizer = train_tokenizer(tmp_path / "tokenizer.json")
    model = text_encoder(tmp_path / "encoder.onnx", vocab_size(tokenizer))
    (tmp_path / "sentences.txt").write_text("\n".join(SENTENCES * 4))
    built = build(BuildRequest(model=model, target="x86-cpu", out=tmp_path / "out",
                               calibration=tmp_path / "sentences.txt"), Progress(quiet=True))
    # The embedding is L2-normalized: its norm is 1 whatever the text, so only its direction is tracked.
    assert built.manifest.drift is not None and built.manifest.drift.output_features == 1  # centroid cosine
    agent = AgentProcess(tmp_path / "agent", config_file=built.path / "agent" / "agent.json").start()
    os.environ["MLPACK_AGENT_SOCKET"] = agent.socket
    try:
        served = ServedModel(built.path / "bento" / "src")
    finally:
        del os.environ["MLPACK_AGENT_SOCKET"]
    # Every request binned: in this process a quiet machine serves more than 1,000 requests a
    # second, and the sample kept then (tested in tests/test_drift_profile.py) would depend on
    # the machine's speed, so would the German rows' share of the window.
    served.reporter.drift.max_per_s = None
    german = ["Die Katze schläft seit dem frühen Morgen zufrieden auf dem warmen Fensterbrett im Wohnzimmer.",
              "Übermorgen fahren wir mit dem Zug über die Berge nach Österreich zu unseren Großeltern."]
    try:
        def scores(sentences: list[str]) -> dict[str, float]:
            for sentence in sentences:
                served.predict({"text": [sentence]})
            served.flush(1.0)
            kept = served.reporter.drift.kept
            wait_for(lambda: agent.value("mlpack_drift_rows_total") == kept, 20, what="the agent to count the rows")
            from prometheus_client.parser import text_string_to_metric_families

            return {s.labels["feature"]: s.value for f in text_string_to_metric_families(agent.scrape())
                    for s in f.samples if s.name == "mlpack_drift_psi"}

        calm = scores(SENTENCES * 60)  # 600 rows
        threshold = built.manifest.target.drift.psi_threshold
        assert max(calm.values()) < threshold, str(calm)
        shifted = scores(german * 200)
        assert shifted["input_ids:nonzero"] > threshold  # token counts: longer sentences
        assert shifted["input_ids:nonzero_mean"] > threshold  # ids: unknown words
        assert shifted["embedding:centroid_cosine"] > threshold  # what the model answers moved too
    finally:
        served.reporter.client.close()
        agent.stop()
