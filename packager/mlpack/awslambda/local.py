"""A Lambda artifact on this machine: the handler under AWS's runtime interface client
(awslambdaric) against the local Runtime API, behind an HTTP front of Function URL events.

What runs is what ships, where this machine allows it: `lambda/function.zip` unpacked
into a read-only task folder (as /var/task is), run by an interpreter of the function's
Python version and architecture (`measure.find_python`: MLPACK_LAMBDA_PYTHON, e.g.
an aarch64 one under qemu, PATH, pyenv), with awslambdaric for it beside the task (as
/var/runtime is; fetched once into mlpack's cache, as the build fetches it to measure the
cold start). Without such an interpreter the handler runs from `lambda/app` with this
Python and its onnxruntime (awslambdaric from the `aws` extra), and `mlpack serve` says so.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..model.demo import cache_dir
from ..extras import require_module
from ..render.facts import lambda_facts
from .emulator import RuntimeAPI
from .measure import (
    RUNTIME_CLIENT, Interpreter, find_python, install_runtime_client, make_writable, unpack_read_only,
)
from ..render.context import RenderContext
from .zip_step import APP
from ..serve import READ_ONLY_SOURCE, ServeOptions, wait_until
from .function_url import FunctionUrlFront, lambda_budget
from ..serve.processes import Processes

def start_lambda(artifact: Artifact, options: ServeOptions, work: Path, socket_path: str, processes: Processes,
                 cleanup: list[Callable[[], None]], stop) -> str:
    m = artifact.manifest
    facts = lambda_facts(RenderContext.from_manifest(m))
    python, task, runtime_dir, note = _function_python(artifact, work)
    if task.is_relative_to(work):
        cleanup.append(lambda: make_writable(task))

    api = RuntimeAPI()
    cleanup.append(api.close)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
        "HOME": str(work), "TMPDIR": str(work),
        "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": m.artifact, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(m.memory_mb),
        "AWS_REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in (task, runtime_dir) if p is not None),
        "MLPACK_AGENT_SOCKET": socket_path, **READ_ONLY_SOURCE,
    }
    if runtime_dir is not None:
        env["LAMBDA_RUNTIME_DIR"] = str(runtime_dir)
    processes.start(f"the Lambda runtime ({RUNTIME_CLIENT})", [python, "-m", RUNTIME_CLIENT, facts.handler],
                    env=env, cwd=task)
    front = FunctionUrlFront(api, options.host, options.port, budget=lambda_budget(task, m.name)).start()
    cleanup.append(front.close)
    wait_until(lambda: api.first_request_at is not None, options.ready_timeout_s, processes, stop,
               "the handler's init")  # its first request to the Runtime API ends init (or reports its error)
    if api.init_error is not None:
        from ..errors import MlpackError

        error = api.init_error if isinstance(api.init_error, dict) else {}
        raise MlpackError(f"the handler failed its init: {error.get('errorType', '')} "
                          f"{error.get('errorMessage', api.init_error)}".strip(),
                          "see the output above; rebuild the artifact")
    return note


def _function_python(artifact: Artifact, work: Path) -> tuple[str, Path, Path | None, str]:
    """(interpreter, task folder, runtime folder or None, what runs, in words)."""
    m = artifact.manifest
    version, arch = m.target.platform.python_version, m.target.platform.arch
    python = find_python(version, arch)
    if python is not None:
        task = unpack_read_only(artifact.path(m.lambda_.zip), work / "task")
        runtime_dir = None if _imports(python.path, RUNTIME_CLIENT) else _runtime_client(python, m)
        under = f"python{version} ({python.path}{', under qemu' if python.emulated else ''})"
        return python.path, task, runtime_dir, f"{m.lambda_.zip} as it ships, on {under}"
    require_module(RUNTIME_CLIENT, RUNTIME_CLIENT, "aws", "`mlpack serve` for a Lambda artifact")
    return (sys.executable, artifact.root / APP, None,
            f"{APP} with this Python {platform.python_version()} and its onnxruntime: no {arch} Python {version} "
            "on this machine (set MLPACK_LAMBDA_PYTHON)")


def _imports(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _runtime_client(python: Interpreter, manifest) -> Path:
    """awslambdaric for the function's Python and platform, in mlpack's cache (fetched once)."""
    version, platform_tag = manifest.target.platform.python_version, manifest.target.platform.python_platform
    folder = cache_dir() / "lambda-runtime" / f"python{version}-{platform_tag}"
    if not (folder / RUNTIME_CLIENT).is_dir():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        install_runtime_client(staging, platform_tag, version, python)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder
