"""Serving apps for the protocol tests, and the servers that run them.

`build_bento` and `build_lambda_app` skip the optimizer (the model ships as given, so
models no optimizer variant handles are served too) but run the real serving code: the
`bento` build step on a manifest made from the model's own signature, and the app folder
the `lambda-zip` step zips. `serving` changes the target's `[serving]` values, as
`mlpack build --max-rows` and friends do.

The servers every served test starts, in one place: `BentoServer` serves a Bento with
`bentoml serve`; `LambdaRuntime` runs a Lambda app's handler under awslambdaric against the
local Runtime API; `FunctionURL` fronts that with mlpack serve's HTTP front, which sends
Function URL events (payload format 2.0, binary bodies in base64), so HTTP clients such as
tritonclient reach the handler unchanged. Their output goes to a temporary file, never to
a pipe nobody reads (a full pipe stalls the server); `wait_until_ready` is the one
readiness loop. Each is a context manager.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import httpx

from mlpack.steps.app import write_app
from mlpack.awslambda.emulator import RuntimeAPI
from mlpack.manifest import Manifest
from mlpack.model.info import inspect_model
from mlpack.render.context import RenderContext
from mlpack.awslambda.function_url import FunctionUrlFront, lambda_budget
from mlpack.steps import StepContext
from mlpack.steps.bento import BentoStep

from .agent_harness import free_port
from .conftest import user_environ
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
    """A server process whose stderr goes to a temporary file (a pipe nobody reads would
    fill up and stall it), kept as `proc.log`; `output` and `last_words` read it back."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, **kwargs)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen) -> str:
    """Everything the process wrote to stderr so far."""
    log = proc.log  # type: ignore[attr-defined]
    log.seek(0)
    return log.read().decode(errors="replace")


def last_words(proc: subprocess.Popen) -> str:
    return output(proc)[-2000:]


def wait_until_ready(url: str, proc: subprocess.Popen | None = None, what: str = "the server",
                     timeout_s: float = 60) -> None:
    """Poll `url` until it answers 200: the one readiness loop of the served tests. With
    `proc`, a server that exits fails at once with its last words."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {last_words(proc)}")
        time.sleep(0.3)
    words = f": {last_words(proc)}" if proc is not None else ""
    raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s{words}")


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, by parent links in /proc (new sessions included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still there after timeout_s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Served(ABC):
    """A running server: a context manager that stops it; `output()` is its stderr so far."""

    proc: subprocess.Popen

    def output(self) -> str:
        return output(self.proc)

    @abstractmethod
    def close(self) -> None:
        """Stop the server and everything it started."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BentoServer(Served):
    """`bentoml serve BENTO` on a free local port, ready when /readyz answers. `env` adds to
    the server's environment (the agent's socket, a GPU artifact's runtime variables)."""

    def __init__(self, bento: Path, home: Path, env: dict[str, str] | None = None, timeout_s: float = 60) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "BENTOML_HOME": str(home), **NO_AGENT, **(env or {})}
        bentoml = Path(sys.executable).with_name("bentoml")
        self.proc = start(
            [str(bentoml), "serve", str(Path(bento).resolve()), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
        )
        try:
            wait_until_ready(f"{self.url}/readyz", self.proc, "bentoml serve", timeout_s)
        except RuntimeError:
            self.close()
            raise

    def close(self) -> None:
        stop(self.proc)


class LambdaRuntime(Served):
    """A Lambda app's handler under awslambdaric against the local Runtime API, as Lambda runs
    it; `invoke(event)` hands it one event. `env` adds to its environment."""

    def __init__(self, app: Path, env: dict[str, str] | None = None) -> None:
        self.api = RuntimeAPI()
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": self.api.address, "PYTHONPATH": str(app), **NO_AGENT,
               **(env or {})}
        self.proc = start([sys.executable, "-m", "awslambdaric", "handler.handler"], cwd=app, env=env)

    def invoke(self, event: dict, timeout: float = 60) -> tuple[str, Any]:
        return self.api.invoke(event, timeout=timeout)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.api.close()


class FunctionURL(Served):
    """A Lambda app's handler under awslambdaric, reachable over HTTP like a Function URL
    (mlpack serve's own front, awslambda/function_url.py)."""

    def __init__(self, app: Path, name: str = "model") -> None:
        self.runtime = LambdaRuntime(app)
        self.proc = self.runtime.proc
        self.front = FunctionUrlFront(self.runtime.api, port=0, budget=lambda_budget(app, name)).start()
        self.url = f"http://{self.front.address}"
        try:
            wait_until_ready(f"{self.url}/v2/health/live", self.proc, "awslambdaric")
        except RuntimeError:
            self.close()
            raise

    def close(self) -> None:
        self.front.close()
        self.runtime.close()


def start_serve(artifact: Path, port: int, agent_port: int, workdir: Path) -> tuple[subprocess.Popen, Path]:
    """`mlpack serve ARTIFACT` on `port` (its agent on `agent_port`); stdout goes to the returned file.
    Run as from a user's shell, where Python writes bytecode (this machine's CI environment
    turns that off): the artifact must come out as it went in."""
    out = workdir / "serve.out"
    env = user_environ()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlpack")), "serve", str(artifact), "--port", str(port),
         "--agent-port", str(agent_port)],
        stdout=open(out, "wb"), stderr=open(workdir / "serve.err", "wb"), env=env,
    )
    return proc, out
