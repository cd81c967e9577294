"""The agent's drift: sliding windows of the service's bin counts, scores against the
profile, what it believes of a datagram's counts, the capture folder, and the edge's
buffered path (drift reaches an OTLP collector after an outage)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from mlpack.monitoring.drift import features
from mlpack.runtime.drift import DriftMeter, Profile
from mlpack_agent.capture import CaptureFolder
from mlpack_agent.client import EventClient
from mlpack_agent.config import CaptureConfig, ConfigError, DriftConfig, load_config
from mlpack_agent.drift import DriftWindow
from mlpack_agent.validate import check

from .agent_harness import AgentProcess, OtlpReceiver, wait_for
from .drift_support import classify, pixels, profile

PROFILE = profile()


def config(**changes) -> DriftConfig:
    return DriftConfig(**{"profile": PROFILE["id"], "window_rows": 400, "slices": 4, "features": features(PROFILE),
                          **changes})


def counts_of(x: np.ndarray) -> dict:
    """What a served model sends for the requests `x` (one request per row)."""
    meter = DriftMeter(Profile(PROFILE), ["label", "probabilities"], max_per_s=None, interval_s=0)
    for row in x:
        out = classify(row[None])
        meter.add({"pixels": row[None]}, [out["label"], out["probabilities"]])
    return meter.take()


def test_traffic_like_the_calibration_data_scores_low_and_shifted_traffic_high() -> None:
    window = DriftWindow(config())
    for seed in range(4):
        assert window.add(counts_of(pixels(100, seed=seed + 1)))  # not the rows the profile was made of
    calm = window.scores()
    assert max(calm.psi.values()) < 0.25
    assert calm.inputs_out_of_range < 0.05  # the default threshold: a few rows beyond the sample's max
    for seed in range(4):
        window.add(counts_of(1 - pixels(100, seed=seed + 10)))  # inverted pixels
    shifted = window.scores()
    psi = {f.name: v for f, v in shifted.psi.items()}
    assert min(v for name, v in psi.items() if name.startswith("pixels")) > 0.25
    assert psi["label"] > 0.25 or psi["probabilities:max"] > 0.25  # the model answers differently too
    assert all(0 <= v <= 1 for v in shifted.js.values())
    assert max(shifted.js.values()) > max(calm.js.values())
    assert shifted.inputs_out_of_range > 0.5  # the zeros of sparse columns became 1, beyond their range


def test_the_window_slides_old_rows_out_and_scores_wait_for_enough_rows() -> None:
    window = DriftWindow(config(window_rows=400, slices=4))
    window.add(counts_of(pixels(150, seed=1)))
    assert window.scores() is None  # fewer than half the window
    window.add(counts_of(pixels(100, seed=2)))
    assert window.scores().rows == 250
    for seed in range(8):
        window.add(counts_of(1 - pixels(100, seed=seed + 3)))
    rows, outside, counts = window.window
    assert 400 <= rows <= 500  # the window holds about its rows, and only recent ones
    assert outside == rows  # the calm rows have left: every row is inverted
    assert window.rows_seen == 1050


def test_counts_of_another_profile_or_that_do_not_add_up_are_refused() -> None:
    window = DriftWindow(config())
    good = counts_of(pixels(10))
    assert not window.add({**good, "profile": "f" * 16})
    assert not window.add({**good, "counts": good["counts"][:-1]})
    assert not window.add({**good, "rows": good["rows"] + 1})  # a feature's counts must sum to the rows
    assert window.add(good)


@pytest.mark.parametrize("drift", [
    {"profile": "x", "rows": 1, "outside": 0, "counts": [1]},
    {"profile": "0" * 16, "rows": 1, "outside": 2, "counts": [1]},
    {"profile": "0" * 16, "rows": 1, "outside": 0, "counts": [-1, 2]},
    {"profile": "0" * 16, "rows": 1, "outside": 0, "counts": [5]},
    {"profile": "0" * 16, "rows": 1, "outside": 0, "counts": [1.5]},
    {"profile": "0" * 16, "rows": 1, "outside": 0, "counts": [1] * 5000},
    [1, 2, 3],
])
def test_a_malformed_drift_field_is_refused_and_the_events_still_count(drift) -> None:
    checked = check(json.dumps({"v": 1, "pid": 1, "drift": drift, "events": [[1.0, 2.0, 1, 8, True, None, None, None]]})
                    .encode())
    assert checked.drift is None and checked.invalid_fields == 1 and len(checked.events) == 1


@pytest.mark.parametrize("change, message", [
    ({"features": [{"name": "a", "source": "input", "reference": [1, 2]}]}, "exactly name, outside, reference, source"),
    ({"features": [{"name": "a", "source": "elsewhere", "reference": [1, 2], "outside": [0]}]}, "use \"input\""),
    ({"features": [{"name": "a", "source": "input", "reference": [0, 0], "outside": [0]}]}, "not all 0"),
    ({"features": [{"name": "a", "source": "input", "reference": [1, 2], "outside": [2]}]}, "slots of its reference"),
    ({"window_rows": 0}, "at least 1"),
])
def test_a_bad_drift_configuration_is_one_line_naming_the_field(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"drift": {"profile": "0" * 16, **change}}))
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_the_capture_folder_rotates_under_its_cap(tmp_path: Path) -> None:
    folder = CaptureFolder(CaptureConfig(dir=str(tmp_path / "capture"), max_bytes=3000, file_bytes=1000))
    sample = {"pixels": [[0.5] * 16]}
    for _ in range(100):
        assert folder.write(sample)
    folder.close()
    files = sorted((tmp_path / "capture").iterdir())
    assert stat.S_IMODE((tmp_path / "capture").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert sum(f.stat().st_size for f in files) <= 3000 and len(files) >= 3  # the oldest went
    last = json.loads(files[-1].read_text().splitlines()[-1])
    assert last["inputs"] == sample and last["time"] > 0
    assert not folder.write({"x": ["y" * 2000]})  # larger than a file: refused


def test_a_capture_folder_others_can_enter_is_refused(tmp_path: Path) -> None:
    from mlpack_agent.folders import UnsafeFolder

    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    with pytest.raises(UnsafeFolder, match="other users can enter the capture folder"):
        CaptureFolder(CaptureConfig(dir=str(tmp_path / "shared")))


def test_raw_inputs_leave_the_service_only_when_capture_is_turned_on(tmp_path: Path, monkeypatch) -> None:
    import socket

    from mlpack.runtime.telemetry import InferenceReporter

    path = str(tmp_path / "sink.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(2)
    monkeypatch.setenv("MLPACK_AGENT_SOCKET", path)
    outputs = [{"name": "label", "dtype": "int64", "shape": [None]}]
    assert InferenceReporter({}, outputs).capture is None  # the default: off
    monkeypatch.setenv("MLPACK_CAPTURE_RATE", "1")
    monkeypatch.setenv("MLPACK_CAPTURE_MAX_BYTES", "2000")
    reporter = InferenceReporter({}, outputs)
    small, large = pixels(1), pixels(40)
    reporter.success(0.0, 0.0, {"pixels": large}, [np.array([1] * 40)])  # over the size cap: not sent
    reporter.success(0.0, 0.0, {"pixels": small}, [np.array([1])])
    assert (reporter.capture.sent, reporter.capture.skipped) == (1, 1)
    assert json.loads(sink.recv(65536))["capture"] == {"pixels": small.tolist()}
    reporter.client.close()
    sink.close()


def test_the_client_sends_counts_with_its_events_and_captures_apart(tmp_path: Path) -> None:
    import socket

    path = str(tmp_path / "sink.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    client = EventClient(socket_path=path, batch=2, linger_s=0)
    meter = DriftMeter(Profile(PROFILE), ["label", "probabilities"], max_per_s=None, interval_s=0)
    client.attach_drift(meter)
    x = pixels(3)
    meter.add({"pixels": x}, list(classify(x).values()))
    client.inference(1.0, 2.0, 3, 64, True)
    client.inference(1.0, 2.0, 3, 64, True)
    first = json.loads(sink.recv(65536))
    assert first["drift"]["rows"] == 3 and len(first["events"]) == 2
    client.inference(1.0, 2.0, 3, 64, True)
    client.flush()
    assert "drift" not in json.loads(sink.recv(65536))  # nothing new to count
    client.capture(json.dumps({"pixels": x[:1].tolist()}))
    captured = json.loads(sink.recv(65536))
    assert captured["capture"] == {"pixels": x[:1].tolist()} and captured["events"] == []
    assert check(json.dumps(captured).encode()).capture == captured["capture"]
    client.close()
    sink.close()


def test_the_last_requests_counts_reach_the_agent_when_no_request_follows(tmp_path: Path) -> None:
    """Counts taken too soon for the last datagram (the meter sends at most every 0.2 s)
    still go out, from the client's lingerer, with no event to carry them."""
    import socket

    path = str(tmp_path / "sink.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(5)
    client = EventClient(socket_path=path, batch=1, linger_s=0.02)
    meter = DriftMeter(Profile(PROFILE), ["label", "probabilities"], max_per_s=None, interval_s=0.2)
    client.attach_drift(meter)
    x = pixels(3)
    rows = 0
    for _ in range(2):  # the second request's event goes out at once, its counts are not due yet
        meter.add({"pixels": x}, list(classify(x).values()))
        client.inference(1.0, 2.0, 3, 64, True)
    while rows < 6:
        rows += (json.loads(sink.recv(65536)).get("drift") or {}).get("rows", 0)
    assert rows == 6 and not meter.waiting()
    client.close()
    sink.close()


@pytest.mark.slow
def test_drift_and_captures_through_a_real_agent_and_an_otlp_outage(tmp_path: Path) -> None:
    """The edge's path: the collector is down while drift is measured; the scores wait in the
    disk buffer and arrive once it is back. Samples go to the capture folder only."""
    receiver = OtlpReceiver()  # not started yet: the collector is down
    agent = AgentProcess(tmp_path / "agent", drift=config(window_rows=100).__dict__,
                         capture={"dir": str(tmp_path / "capture")},
                         otlp={"endpoint": receiver.endpoint, "interval_s": 1}).start()
    client = EventClient(socket_path=agent.socket, linger_s=0)
    meter = DriftMeter(Profile(PROFILE), ["label", "probabilities"], max_per_s=None, interval_s=0)
    client.attach_drift(meter)
    try:
        for x in (pixels(100, seed=3), 1 - pixels(100, seed=4)):
            meter.add({"pixels": x}, list(classify(x).values()))
            client.inference(1.0, 2.0, 100, x.nbytes, True)
            client.flush()
        client.capture(json.dumps({"pixels": pixels(1).tolist()}))
        wait_for(lambda: agent.value("mlpack_agent_captured_total") == 1, 20, what="the sample written")
        wait_for(lambda: agent.value("mlpack_drift_psi", feature="pixels[5]") > 0.25, 20, what="drift scored")
        time.sleep(2.5)  # exports into the buffer while the collector is down
        assert list((tmp_path / "agent" / "buffer").glob("*.metrics.*"))
        receiver.start()
        wait_for(lambda: any(p.as_double > 0.25 for p in receiver.points("mlpack.drift.psi")), 30,
                 what="drift scores at the collector")
        assert receiver.points("mlpack.drift.inputs_out_of_range.ratio")
        assert len(os.listdir(tmp_path / "capture")) == 1
    finally:
        client.close()
        agent.stop()
        receiver.stop()
