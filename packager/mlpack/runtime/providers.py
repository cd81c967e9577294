"""Which execution provider a session really runs on, and why the one asked for did not load.

onnxruntime falls back to the CPU without a word when an accelerator's provider cannot
load: `get_available_providers()` lists CUDA whenever the package was built with it,
loadable or not, and the reason goes to a native log that serving keeps at FATAL. So a
session's own `get_providers()` is the only truth, and the reason is found here again:
loading the provider's library (the dynamic loader names the missing library), then
asking the driver (libcuda) for a device and its CUDA version.

A served model whose target requires an accelerator is not ready on the CPU unless told
to be (`MLPACK_ALLOW_CPU=1`, which `mlpack serve --allow-cpu` sets): see docs/serving.md.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

CPU = "CPUExecutionProvider"
ALLOW_CPU_ENV = "MLPACK_ALLOW_CPU"
# Set once a process checked the provider (preflight), for the worker processes it starts.
CHECKED_ENV = "MLPACK_PROVIDER_CHECKED"
# A process that stops because its provider did not load exits with this status.
UNAVAILABLE_EXIT = 3
# The provider libraries onnxruntime loads for these providers, beside its own binding.
_LIBRARIES = {"CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
              "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so"}
_DRIVER = "libcuda.so.1"


class ProviderUnavailable(Exception):
    """The target's execution provider did not load: the session would run on the CPU."""


def required_provider(settings: Mapping[str, Any]) -> str | None:
    """The accelerator the settings put first, which a served session must get; None for CPU targets."""
    providers = list(settings.get("execution_providers") or [CPU])
    return None if providers[0] == CPU else providers[0]


def allow_cpu() -> bool:
    return os.environ.get(ALLOW_CPU_ENV, "").strip().lower() in ("1", "true", "yes")


def check_session(session, settings: Mapping[str, Any], allowed_on_cpu: bool = False) -> str:
    """The provider the session runs on. Raises ProviderUnavailable when the settings require
    an accelerator the session did not get, unless `allowed_on_cpu`."""
    got = session.get_providers()[0]
    required = required_provider(settings)
    if required is None or got == required:
        return got
    if allowed_on_cpu:  # on purpose, and loudly: the agent's provider metric and alert say it too
        import sys

        print(f"mlpack: serving on {got} on purpose ({ALLOW_CPU_ENV}=1): {required} did not load: "
              f"{why_not_loaded(required)}", file=sys.stderr, flush=True)
        return got
    raise ProviderUnavailable(
        f"{required} did not load, so the model would run on {got}: {why_not_loaded(required)}; "
        f"set {ALLOW_CPU_ENV}=1 (mlpack serve --allow-cpu) to serve on the CPU on purpose")


def preflight(folder: str, settings: Mapping[str, Any]) -> None:
    """Before a server starts its workers: check, in a short-lived child process, that the
    artifact's model gets its required provider here. Print one line and exit with
    UNAVAILABLE_EXIT when it does not, so that `bentoml serve` (and the container) ends
    instead of restarting workers that can never be ready. A child, so that the server's
    own process holds no GPU context; skipped for CPU targets and under MLPACK_ALLOW_CPU."""
    if required_provider(settings) is None or allow_cpu() or os.environ.get(CHECKED_ENV) == "1":
        return
    import subprocess
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding mlpack_runtime
    code = ("import os, sys\n"
            "from mlpack_runtime.config import load_runtime\n"
            "from mlpack_runtime.providers import ProviderUnavailable, check_session\n"
            "runtime = load_runtime(os.path.join(sys.argv[1], 'runtime.json'))\n"
            "try:\n    check_session(runtime.open_session(sys.argv[1]), runtime.session)\n"
            "except ProviderUnavailable as exc:\n    print(f'mlpack: not ready: {exc}', file=sys.stderr)\n"
            f"    sys.exit({UNAVAILABLE_EXIT})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", code, folder], env=env)
    if done.returncode != 0:
        sys.exit(done.returncode)
    os.environ[CHECKED_ENV] = "1"


def why_not_loaded(provider: str) -> str:
    """Why onnxruntime could not use `provider` here, in one clause."""
    import ctypes  # only when something is wrong: a Lambda cold start does not pay for it

    import onnxruntime as ort
    from onnxruntime.capi import build_and_package_info as build

    runtime = f"{build.package_name} {ort.__version__}"
    if provider not in ort.get_available_providers():
        return f"{runtime} is not built with it (the target ships onnxruntime-gpu)"
    library = _LIBRARIES.get(provider)
    if library is None:
        return f"{runtime} gave no reason"
    capi = os.path.join(os.path.dirname(ort.__file__), "capi")
    try:
        # What onnxruntime does first: the shared provider bridge, globally, then the provider.
        ctypes.CDLL(os.path.join(capi, "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(os.path.join(capi, library))
    except OSError as exc:
        # "libcublasLt.so.13: cannot open shared object file: No such file or directory"
        missing, _, detail = str(exc).partition(": ")
        missing = os.path.basename(missing)
        if missing == _DRIVER:
            return (f"the NVIDIA driver's {_DRIVER} is not visible here (a GPU host's driver reaches a container "
                    "through the NVIDIA container toolkit: docker run --gpus all, or a nvidia.com/gpu resource)")
        if missing == library or not detail.startswith("cannot open"):
            return f"{library} does not load: {missing}: {detail}"
        return f"{library} needs {missing}, which cannot be loaded ({detail})"
    return _driver_problem(getattr(build, "cuda_version", "")) or f"{runtime} gave no reason"


def _driver_problem(cuda_version: str) -> str:
    """What the CUDA driver says against this runtime's CUDA version: no device, too old; '' if fine."""
    import ctypes

    try:
        cuda = ctypes.CDLL(_DRIVER)
    except OSError as exc:
        return f"the NVIDIA driver's {_DRIVER} cannot be loaded ({exc})"
    status = cuda.cuInit(0)
    if status != 0:
        return f"the CUDA driver found no usable GPU (cuInit error {status})"
    version, count = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    cuda.cuDeviceGetCount(ctypes.byref(count))
    if count.value == 0:
        return "the CUDA driver sees no GPU"
    have = f"{version.value // 1000}.{version.value % 1000 // 10}"
    needed = cuda_version.split(".")
    if needed[0].isdigit() and version.value < int(needed[0]) * 1000 + (int(needed[1]) * 10 if len(needed) > 1 and needed[1].isdigit() else 0):
        return (f"the driver supports CUDA {have} and onnxruntime-gpu is built for CUDA {cuda_version}: "
                "upgrade the NVIDIA driver (docs/serving.md lists each GPU target's driver)")
    return ""
