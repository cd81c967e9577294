"""Serving apps for the protocol tests, and the servers that run them.

`build_bento` and `build_lambda_app` skip the optimizer (the model ships as given, so
models no optimizer variant handles are served too) but run the real serving code: the
`bento` build step on a manifest made from the model's own signature, and the app folder
the `lambda-zip` step zips. `serving` changes the target's `[serving]` values, as
`mlpack build --max-rows` and friends do.

`BentoServer` serves a Bento with `bentoml serve`. `FunctionURL` runs a Lambda app's
handler under awslambdaric against the local Runtime API and fronts it with mlpack
serve's HTTP front, which sends Function URL events (payload format 2.0, binary bodies in
base64), so HTTP clients such as tritonclient reach the handler unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mlpack.app import write_app
from mlpack.lambda_emulator import RuntimeAPI
from mlpack.manifest import Manifest
from mlpack.model_info import inspect_model
from mlpack.render import RenderContext
from mlpack.serve.function_url import FunctionUrlFront, lambda_budget
from mlpack.steps import StepContext
from mlpack.steps.bento import BentoStep

from .agent_harness import free_port
from .manifests import make_manifest

NO_AGENT = {"MLPACK_AGENT_SOCKET": "/nonexistent/agent.sock"}


def served_manifest(model: Path, target: str, name: str, **serving: Any) -> Manifest:
    info = inspect_model(model)
    manifest = make_manifest(target, name, signature=info.signature, model_sha256=info.sha256,
                             size_bytes=info.size_bytes)
    return manifest.model_copy(update={"target": manifest.target.with_serving(**serving)})


def build_bento(model: Path, folder: Path, name: str = "model", **serving: Any) -> Path:
    """The Bento the `bento` step makes for this model as it is; returns its folder."""
    manifest = served_manifest(model, "x86-cpu", name, **serving)
    folder.mkdir(parents=True, exist_ok=True)
    BentoStep().run(StepContext(root=folder, work=folder / ".work", manifest=manifest, model=model))
    return folder / "bento"


def build_lambda_app(model: Path, folder: Path, name: str = "model", **serving: Any) -> Path:
    """The Lambda app folder (handler.py, mlpack_runtime, runtime.json, model) for this model."""
    manifest = served_manifest(model, "aws-lambda", name, **serving)
    write_app(folder, RenderContext.from_manifest(manifest), model)
    return folder


def start(command: list[str], **kwargs: Any) -> subprocess.Popen:
    """A server process whose output goes to a temporary file (a pipe nobody reads would
    fill up and stall it); `last_words` reads it back."""
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile(), **kwargs)


def last_words(proc: subprocess.Popen) -> str:
    proc.stderr.seek(0)
    return proc.stderr.read().decode(errors="replace")[-2000:]


def wait_until_ready(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {last_words(proc)}")
        time.sleep(0.3)
    raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s: {last_words(proc)}")


class BentoServer:
    """`bentoml serve BENTO` on a free local port, ready when /readyz answers."""

    def __init__(self, bento: Path, home: Path, agent_socket: str | None = None) -> None:
        """`agent_socket`: report to the agent listening there (by default to none)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        agent = {"MLPACK_AGENT_SOCKET": agent_socket, "MLPACK_AGENT_LINGER_S": "0.05"} if agent_socket else NO_AGENT
        env = {**os.environ, "BENTOML_HOME": str(home), **agent}
        bentoml = Path(sys.executable).with_name("bentoml")
        self.proc = start(
            [str(bentoml), "serve", str(Path(bento).resolve()), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
        )
        try:
            wait_until_ready(f"{self.url}/readyz", self.proc, "bentoml serve")
        except RuntimeError:
            self.close()
            raise

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class FunctionURL:
    """A Lambda app's handler under awslambdaric, reachable over HTTP like a Function URL
    (mlpack serve's own front, serve/function_url.py)."""

    def __init__(self, app: Path, name: str = "model") -> None:
        self.api = RuntimeAPI()
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": self.api.address, "PYTHONPATH": str(app), **NO_AGENT}
        self.proc = start([sys.executable, "-m", "awslambdaric", "handler.handler"], cwd=app, env=env)
        self.front = FunctionUrlFront(self.api, port=0, budget=lambda_budget(app, name)).start()
        self.url = f"http://{self.front.address}"
        try:
            wait_until_ready(f"{self.url}/v2/health/live", self.proc, "awslambdaric")
        except RuntimeError:
            self.close()
            raise

    def close(self) -> None:
        self.front.close()
        self.proc.kill()
        self.proc.wait()
        self.api.close()
