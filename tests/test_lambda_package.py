"""The demo's Lambda zip as it ships: bytecode for the function's Python in it, nothing the
handler never imports, the recorded peak memory the shipped code's real one, and the
same bytes when the same artifact is built again."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from mlpack.build import BuildRequest, build
from mlpack.build.plan import memory_mb
from mlpack.awslambda.measure import find_python, install_runtime_client, make_writable, unpack_read_only
from mlpack.progress import Progress
from mlpack.awslambda.zip_step import sample_event

from .lambda_support import requires_python312
from .pyramid import heavy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
@heavy
def lambda_artifact(demo_artifact):
    return demo_artifact("aws-lambda")


def zip_of(artifact) -> zipfile.ZipFile:
    return zipfile.ZipFile(artifact.path / artifact.manifest.lambda_.zip)


@requires_python312
def test_every_module_ships_bytecode_that_no_cold_start_checks_against_its_source(lambda_artifact) -> None:
    zf = zip_of(lambda_artifact)
    names = set(zf.namelist())
    sources = [PurePosixPath(n) for n in names if n.endswith(".py")]
    assert len(sources) > 150  # numpy, onnxruntime, the runtime: not an empty package
    for source in sources:
        pyc = (source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc").as_posix()
        assert pyc in names, f"{source} has no bytecode"
    for name in (n for n in names if n.endswith(".pyc")):
        header = zf.read(name)[:16]
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{name} is not unchecked-hash bytecode"
    handler = zf.read("__pycache__/handler.cpython-312.pyc")
    assert b"/var/task/handler.py" in handler  # tracebacks name the file where Lambda has it
    assert lambda_artifact.manifest.lambda_.bytecode == "cpython-312, unchecked-hash"


def test_what_the_handler_never_imports_is_left_out_and_said(lambda_artifact) -> None:
    names = zip_of(lambda_artifact).namelist()
    left_in = [n for n in names if "/tests/" in n or n.endswith((".pyi", ".h", ".a", ".pxd"))
               or n.startswith(("onnxruntime/tools/", "onnxruntime/quantization/", "google/protobuf/", "bin/"))
               or "libonnxruntime.so" in n]
    assert left_in == []
    assert any(n.startswith("onnxruntime/capi/onnxruntime_pybind11_state") for n in names)
    pruned = {p.kind: p for p in lambda_artifact.manifest.lambda_.pruned}
    assert {"tests", "type stubs", "headers and static libraries", "onnxruntime's C API"} <= set(pruned)
    assert pruned["onnxruntime's C API"].bytes > 10 * 2**20
    report = (lambda_artifact.path / "report.md").read_text()
    for kind in pruned:
        assert f"| {kind} | {pruned[kind].files} |" in report


# Runs in a fresh interpreter inside the unpacked zip: what the shipped code itself peaks at.
_REAL_PEAK = """
import json, sys
import handler
reply = handler.handler(json.loads(sys.argv[1]), None)
assert "outputs" in reply, reply
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) / 1024)
"""


@requires_python312
def test_the_recorded_peak_is_within_a_quarter_of_the_shipped_codes_real_peak(lambda_artifact, tmp_path) -> None:
    manifest = lambda_artifact.manifest
    task = unpack_read_only(lambda_artifact.path / manifest.lambda_.zip, tmp_path / "task")
    try:
        event = json.dumps(sample_event(manifest.model.signature))
        out = subprocess.run([find_python("3.12").path, "-c", _REAL_PEAK, event], cwd=task, capture_output=True,
                             text=True, env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}, check=True)
    finally:
        make_writable(task)
    real = float(out.stdout.strip())
    recorded = lambda_artifact.cold_start.peak_rss_mb  # in report.json; the manifest holds the sizing
    assert abs(recorded - real) <= 0.25 * real, (recorded, real)
    assert manifest.memory_mb == memory_mb(manifest.model.size_bytes, recorded)
    sam = (lambda_artifact.path / "iac" / "sam" / "template.yaml").read_text()
    assert f"MemorySize: {manifest.memory_mb}\n" in sam


def test_rebuilding_the_same_lambda_artifact_gives_the_same_zip_bytes(lambda_artifact, tmp_path: Path) -> None:
    again = build(BuildRequest(target="aws-lambda", out=tmp_path), Progress(quiet=True))
    digest = lambda a: hashlib.sha256((a.path / a.manifest.lambda_.zip).read_bytes()).hexdigest()  # noqa: E731
    assert again.manifest.model.sha256 == lambda_artifact.manifest.model.sha256
    assert digest(again) == digest(lambda_artifact)
    assert again.manifest.files["lambda/function.zip"] == lambda_artifact.manifest.files["lambda/function.zip"]


# In the unpacked zip: load what the runtime and a bare onnxruntime handler load, then the
# handler and its first answer; print the modules that only mlpack's handler brought in.
_EXTRA_MODULES = """
import json, sys
import awslambdaric.bootstrap, awslambdaric.lambda_runtime_client
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
session.run(None, {i.name: np.zeros([1 if not isinstance(d, int) else d for d in i.shape], np.float32)
                   for i in session.get_inputs()})
before = set(sys.modules)
import handler
handler.handler(json.loads(sys.argv[1]), None)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@requires_python312
@pytest.mark.parametrize("agent", ["off", "on"])
def test_at_init_the_handler_imports_little_beyond_a_bare_onnxruntime_handler(lambda_artifact, tmp_path,
                                                                              agent: str) -> None:
    manifest = lambda_artifact.manifest
    python = find_python("3.12", "x86_64")
    runtime = install_runtime_client(tmp_path / "runtime", "x86_64-manylinux_2_28", "3.12", python)
    task = unpack_read_only(lambda_artifact.path / manifest.lambda_.zip, tmp_path / "task")
    env = {"PYTHONPATH": f"{task}:{runtime}", "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin",
           "MLPACK_AGENT_DISABLED": "1" if agent == "off" else "0", "MLPACK_AGENT_SOCKET": "/nonexistent.sock"}
    try:
        out = subprocess.run([python.path, "-c", _EXTRA_MODULES, json.dumps(sample_event(manifest.model.signature))],
                             cwd=task, capture_output=True, text=True, env=env, check=True)
    finally:
        make_writable(task)
    extra = {m for m in json.loads(out.stdout) if not m.startswith(("mlpack_runtime", "handler"))}
    # Not pathlib, tempfile, random, base64 (deferred to where they are needed, see
    # benchmarks/lambda_cold_start.py); the agent's client and socket only when it is on.
    expected = {"dataclasses", "copy", "snapshot_restore_py"}
    if agent == "on":
        expected |= {"mlpack_agent", "mlpack_agent.client", "mlpack_agent.protocol", "socket", "_socket",
                     "selectors", "select", "array", "errno"}
    assert extra == expected
