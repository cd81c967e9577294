"""A Lambda artifact on this machine: the handler under AWS's runtime interface client
(awslambdaric) against the local Runtime API, behind an HTTP front of Function URL events.

What runs is what ships, where this machine allows it: `lambda/function.zip` unpacked
into a read-only task folder (as /var/task is), run by an interpreter of the function's
Python version, with awslambdaric for that version beside it (as /var/runtime is; fetched
once into mlpack's cache by uv, like the build fetches the zip's wheels). Without such an
interpreter, or for another CPU architecture, the handler runs from `lambda/app` with this
Python and its onnxruntime, and `mlpack serve` says so.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..demo import cache_dir
from ..extras import require_module
from ..facts import lambda_facts
from ..lambda_emulator import RuntimeAPI
from ..render import RenderContext
from ..steps.lambda_zip import APP, find_python
from ..uv import install_for_platform
from . import ServeOptions, wait_until
from .function_url import FunctionUrlFront
from .processes import Processes

RUNTIME_CLIENT = "awslambdaric"


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
        "MLPACK_AGENT_SOCKET": socket_path,
    }
    if runtime_dir is not None:
        env["LAMBDA_RUNTIME_DIR"] = str(runtime_dir)
    processes.start(f"the Lambda runtime ({RUNTIME_CLIENT})", [python, "-m", RUNTIME_CLIENT, facts.handler],
                    env=env, cwd=task)
    front = FunctionUrlFront(api, options.host, options.port).start()
    cleanup.append(front.close)
    wait_until(lambda: api.ready.is_set() or api.init_error is not None, options.ready_timeout_s, processes, stop,
               "the handler's init")
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
    python = find_python(version)
    if python is not None and arch == platform.machine():
        task = _unpack(artifact.root / m.lambda_.zip, work / "task")
        runtime_dir = None if _imports(python, RUNTIME_CLIENT) else _runtime_client(python, version, m)
        return python, task, runtime_dir, f"{m.lambda_.zip} as it ships, on python{version} ({python})"
    require_module(RUNTIME_CLIENT, RUNTIME_CLIENT, "aws", "`mlpack serve` for a Lambda artifact")
    why = (f"no Python {version} on this machine (set MLPACK_LAMBDA_PYTHON)" if python is None
           else f"the function is {arch}, this machine {platform.machine()}")
    return (sys.executable, artifact.root / APP, None,
            f"{APP} with this Python {platform.python_version()} and its onnxruntime: {why}")


def _unpack(zip_path: Path, task: Path) -> Path:
    """The function's zip unpacked and made read-only, as Lambda's /var/task is."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task)
    for path in [task, *task.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return task


def make_writable(folder: Path) -> None:
    """Undo _unpack's read-only modes, so that the work folder can be removed."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _imports(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _runtime_client(python: str, version: str, manifest) -> Path:
    """awslambdaric for the function's Python, in mlpack's cache (installed once, by uv)."""
    platform_tag = manifest.target.platform.python_platform
    folder = cache_dir() / "lambda-runtime" / f"python{version}-{platform_tag}"
    if not (folder / RUNTIME_CLIENT).is_dir():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        install_for_platform(staging, python_platform=platform_tag, python_version=version,
                             packages=[RUNTIME_CLIENT], what=f"fetching {RUNTIME_CLIENT} for python{version}")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder
