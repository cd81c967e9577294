"""`mlpack serve ARTIFACT`: run an artifact on this machine as it runs in production, with
its telemetry agent beside it.

    agent      python -m mlpack_agent.main --config <the artifact's agent.json, moved here>
               (Prometheus on the agent port, the socket shared through MLPACK_AGENT_SOCKET)
    service    a Bento (servers, edge): `bentoml serve <absolute bento path>`
               a Lambda package: the handler under awslambdaric against the local Runtime
               API (awslambda/emulator.py), behind an HTTP front that sends Function URL
               events (awslambda/function_url.py)

Everything runs from a temporary folder that is removed at the end; the artifact itself
is only read. Ctrl-C or SIGTERM stops the service, then the agent, whole process groups
(processes.py), and nothing is left running.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..errors import InputError, MlpackError
from ..render.facts import AGENT_PORT
from ..progress import Progress
from ..resources import data_dir
from ..runtime.providers import ALLOW_CPU_ENV
from .processes import Processes, StopSignals

DEFAULT_PORT = 3000  # BentoML's default, kept for the Lambda front too
READY_TIMEOUT_S = 120.0
# The service imports its code from the artifact: without this, Python writes __pycache__
# folders into it, files the manifest does not list, and `mlpack sign` or `verify` then
# refuses the artifact. Production does the same (the image's ENV, the systemd units).
READ_ONLY_SOURCE = {"PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    agent_port: int = AGENT_PORT
    ready_timeout_s: float = READY_TIMEOUT_S
    allow_cpu: bool = False  # serve a GPU artifact on the CPU on purpose (MLPACK_ALLOW_CPU=1)


@dataclass(frozen=True)
class Endpoint:
    what: str
    method: str
    url: str


def endpoints(artifact: Artifact, options: ServeOptions) -> list[Endpoint]:
    base = f"http://{_url_host(options.host)}:{options.port}"
    return [
        Endpoint("predict", "POST", f"{base}/predict"),
        Endpoint("ready", "GET", f"{base}/readyz"),
        Endpoint("metrics", "GET", f"http://{_url_host(options.host)}:{options.agent_port}/metrics"),
    ]


def serve(artifact: Artifact, options: ServeOptions, progress: Progress,
          on_ready: Callable[[list[Endpoint], str], None]) -> int | None:
    """Run until SIGINT/SIGTERM; returns the signal that stopped it. Raises MlpackError when
    something does not start or dies while serving; either way nothing is left running."""
    m = artifact.manifest
    if m.lambda_ is None and m.bento is None:
        raise InputError(f"{artifact.name} has neither a Bento nor a Lambda package to serve", "rebuild it")
    _check_port(options.host, options.port, "--port")
    _check_port(options.host, options.agent_port, "--agent-port")
    processes = Processes()
    cleanup: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="mlpack-serve-") as tmp, StopSignals() as signals:
        work = Path(tmp)
        try:
            with progress.step(f"Starting the telemetry agent (Prometheus on port {options.agent_port})"):
                socket_path = start_agent(artifact, options, work, processes, signals.stop)
            if m.lambda_ is not None:
                from ..awslambda.local import start_lambda

                with progress.step("Starting the Lambda handler under the local Runtime API"):
                    note = start_lambda(artifact, options, work, socket_path, processes, cleanup, signals.stop)
            else:
                with progress.step("Starting the Bento (bentoml serve)"):
                    note = start_bento(artifact, options, work, socket_path, processes, signals.stop)
            if signals.stop.is_set():
                return signals.received
            on_ready(endpoints(artifact, options), note)
            while not signals.stop.wait(0.25):
                _raise_if_exited(processes)
            return signals.received
        finally:
            processes.stop()  # the service first, then its agent
            for close in reversed(cleanup):
                close()


def drift_lines(artifact: Artifact) -> list[str]:
    """What the agent compares traffic with: the artifact's drift profile, per tensor."""
    m = artifact.manifest
    if m.drift is None:
        return ["no drift profile (built without calibration data): the agent exports no drift metrics"]
    from ..monitoring.drift import feature_summary

    profile = json.loads(artifact.path(m.drift.profile).read_text(encoding="utf-8"))
    d = m.target.drift
    lines = [f"profile {m.drift.id}: {m.drift.input_features} input and {m.drift.output_features} output features "
             f"from {m.drift.data_source}; window {d.window_rows} rows, alerts above PSI {d.psi_threshold} or "
             f"{d.out_of_range_threshold:.0%} of rows out of range for {d.sustained}"]
    lines += [f"  {source} {tensor}: {what}" for tensor, source, what in feature_summary(profile)]
    return lines


# ---- the agent ----------------------------------------------------------------------


def agent_config(artifact: Artifact, options: ServeOptions, work: Path) -> dict:
    """The artifact's agent.json, moved to this machine: socket, buffer and health checks in
    the work folder, Prometheus on (Lambda artifacts export by OTLP only) on the agent port."""
    config = json.loads((artifact.root / "agent" / "agent.json").read_text(encoding="utf-8"))
    config["socket"] = str(work / "agent.sock")  # work is private (mode 0700), as the agent requires
    # The service is a child of this command too: the agent can see every sender's pid.
    config["peers"] = {**config.get("peers", {}), "same_pid_namespace": True}
    config["prometheus"] = {**config.get("prometheus", {}), "enabled": True, "host": options.host,
                            "port": options.agent_port}
    config["buffer"] = {**config.get("buffer", {}), "dir": str(work / "agent-buffer")}
    config["health"] = {**config.get("health", {}), "disk_path": str(work)}
    return config


def start_agent(artifact: Artifact, options: ServeOptions, work: Path, processes: Processes,
                stop) -> str:
    config = agent_config(artifact, options, work)
    path = work / "agent.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    # The agent's own distribution: installed, or the source that ships inside mlpack.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(data_dir("agent")),
                                                                      os.environ.get("PYTHONPATH")]))}
    for var in [v for v in env if v.startswith("MLPACK_AGENT_")]:
        del env[var]  # the config written here decides, not this shell's overrides
    processes.start("the telemetry agent", [sys.executable, "-m", "mlpack_agent.main", "--config", str(path)],
                            env=env, log=work / "agent.log")
    metrics = f"http://{_url_host(options.host)}:{options.agent_port}/metrics"
    wait_until(lambda: Path(config["socket"]).exists() and _http_ok(metrics), 30, processes, stop,
               f"the telemetry agent to listen on port {options.agent_port}")
    return config["socket"]


# ---- a Bento ------------------------------------------------------------------------


def start_bento(artifact: Artifact, options: ServeOptions, work: Path, socket_path: str,
                processes: Processes, stop) -> str:
    bento = artifact.path(artifact.manifest.bento.path)
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "true",
           "MLPACK_AGENT_SOCKET": socket_path, **READ_ONLY_SOURCE, **runtime_env_vars(artifact, options)}
    # An absolute path: `bentoml serve` reads a relative one as a module name.
    processes.start("bentoml serve", [sys.executable, "-m", "bentoml", "serve", str(bento.resolve()),
                                      "--host", options.host, "--port", str(options.port)], env=env)
    ready = f"http://{_url_host(options.host)}:{options.port}/readyz"
    wait_until(lambda: _http_ok(ready), options.ready_timeout_s, processes, stop, "the Bento to be ready")
    return f"the Bento {artifact.manifest.bento.tag} (bentoml serve, {pinned(artifact)})"


def pinned(artifact: Artifact):
    """The onnxruntime release the artifact pins (onnxruntime-gpu for GPU targets)."""
    from ..pinned_runtime import pinned_runtime

    return pinned_runtime(artifact.manifest.target.runtime.onnxruntime, artifact.manifest.versions.onnxruntime)


def runtime_env_vars(artifact: Artifact, options: ServeOptions) -> dict[str, str]:
    """The environment that makes the Bento run on the onnxruntime release the artifact pins,
    as in production: that release's own folder first on PYTHONPATH when this installation
    has another one; MLPACK_ALLOW_CPU for --allow-cpu."""
    env = {ALLOW_CPU_ENV: "1"} if options.allow_cpu else {}
    runtime = pinned(artifact)
    if not runtime.local:
        from ..pinned_runtime.environment import runtime_env

        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(runtime_env(runtime.package, runtime.version)),
                                                          os.environ.get("PYTHONPATH")]))
    return env


# ---- shared -------------------------------------------------------------------------


def wait_until(ready: Callable[[], bool], timeout_s: float, processes: Processes, stop, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        _raise_if_exited(processes)
        if ready():
            return
        if time.monotonic() > deadline:
            raise MlpackError(f"timed out after {timeout_s:.0f} s waiting for {what}",
                              "rerun with --debug; check the output above")
        stop.wait(0.2)


def _raise_if_exited(processes: Processes) -> None:
    child = processes.exited()
    if child is not None:
        tail = child.tail()
        raise MlpackError(f"{child.name} exited with status {child.proc.returncode}" + (f": {tail}" if tail else ""),
                          "see its output above; rerun with --debug")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - a local URL we made
            return reply.status == 200
    except OSError:
        return False


def _check_port(host: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: only a listener counts
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(f"port {port} on {host} is not free ({exc.strerror or exc})",
                             f"pass another {option}, or stop what listens there") from exc


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
