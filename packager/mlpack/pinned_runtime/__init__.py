"""The onnxruntime a target pins, wherever mlpack loads, gates or times a model for it.

What was measured must be what is served: the build checks and gates every candidate in
the exact onnxruntime package and version the artifact pins (onnxruntime-gpu runs on a
CPU host too, on its CPU provider). When this process imported that very release, its
sessions are opened here; otherwise in a worker process (`remote.py`) whose environment
(`environment.py`) holds only that release and numpy. Either way sessions are opened by
the serving runtime's `open_session`, with the target's settings.

`compat.py` says whether a model can be read by that release at all, and lowers its
ONNX IR version when that is safe.
"""

from __future__ import annotations

import atexit
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..runtime.config import open_session

if TYPE_CHECKING:  # compat imports onnx: loaded when a model is checked, not with the build plan
    import onnx

    from ..targets import Target
    from .compat import Fit, Limits

__all__ = ["CPU", "PinnedRuntime", "for_target", "host_runtime", "pinned_runtime",
           "pinned_version", "runtime_message"]

CPU = ["CPUExecutionProvider"]


def host_runtime() -> tuple[str, str]:
    """(package, version) of the onnxruntime this process imports: onnxruntime or onnxruntime-gpu."""
    import onnxruntime
    from onnxruntime.capi import build_and_package_info as build

    return build.package_name, onnxruntime.__version__


class PinnedRuntime:
    """One onnxruntime release: open sessions in it, and know what it reads."""

    def __init__(self, package: str, version: str) -> None:
        self.package, self.version = package, version
        self.local = (package, version) == host_runtime()
        self._worker = None

    def __str__(self) -> str:
        return f"{self.package} {self.version}"

    @property
    def where(self) -> str:
        """In words, for reports: which process runs the sessions."""
        return "in mlpack's process" if self.local else "in a worker process of its own"

    def open(self, source: str | Path | bytes, settings: dict[str, Any], providers: Sequence[str] = CPU,
             external_data_folder: str | Path | None = None):
        """A session on `providers` (default: the CPU every host has)."""
        if self.local:
            return open_session(source, settings, list(providers), external_data_folder)
        from .remote import RemoteSession

        src = source if isinstance(source, bytes) else str(source)
        folder = str(external_data_folder) if external_data_folder is not None else None
        return RemoteSession(self.worker, src, settings, providers, folder)

    def available_providers(self) -> list[str]:
        if self.local:
            import onnxruntime

            return onnxruntime.get_available_providers()
        return list(self.worker.info["providers"])

    @property
    def cuda_version(self) -> str:
        """The CUDA release this onnxruntime was built for ('' without a CUDA provider)."""
        if self.local:
            from onnxruntime.capi import build_and_package_info as build

            return getattr(build, "cuda_version", "")
        return self.worker.info.get("cuda_version", "")

    def probe(self, model: bytes) -> str:
        """'' when this release loads the serialized model, else why not (one line)."""
        try:
            self.open(model, {})
        except Exception as exc:
            return runtime_message(exc)
        return ""

    @cached_property
    def limits(self) -> Limits:
        """The highest ONNX IR version and ai.onnx opset this release reads, found by loading
        tiny models (the releases say so only in their error messages)."""
        import onnx

        from .compat import Limits

        top_ir, top_opset = onnx.IR_VERSION, onnx.defs.onnx_opset_version()
        max_ir = next((ir for ir in range(top_ir, 2, -1) if not self.probe(_identity(ir, 7))), 3)
        max_opset = next((o for o in range(top_opset, 6, -1) if not self.probe(_identity(max_ir, o))), 7)
        return Limits(self.package, self.version, max_ir, max_opset)

    def fit(self, model: onnx.ModelProto) -> Fit:
        """How the model fits this release: as it is, with its IR version lowered, or not at all."""
        from .compat import fit

        return fit(model, self.limits)

    @property
    def worker(self):
        if self._worker is None:
            from .environment import runtime_env
            from .remote import Worker

            self._worker = Worker(runtime_env(self.package, self.version), str(self))
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


_RUNTIMES: dict[tuple[str, str], PinnedRuntime] = {}


def pinned_version(target: Target) -> str:
    """The onnxruntime release a target's artifacts pin: its own `version`, else the one mlpack
    was installed with (build/plan.py pins the same)."""
    return target.runtime.version or metadata.version("onnxruntime")


def for_target(target: Target) -> PinnedRuntime:
    """The onnxruntime the target's artifacts ship, exactly."""
    return pinned_runtime(target.runtime.onnxruntime, pinned_version(target))


def pinned_runtime(package: str, version: str) -> PinnedRuntime:
    """The runtime for `package==version`, one per process (its worker is reused)."""
    key = (package, version)
    if key not in _RUNTIMES:
        _RUNTIMES[key] = PinnedRuntime(package, version)
    return _RUNTIMES[key]


@atexit.register
def _close_all() -> None:
    for runtime in _RUNTIMES.values():
        runtime.close()


def _identity(ir_version: int, opset: int) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def runtime_message(exc: BaseException | str) -> str:
    """onnxruntime's error as a person reads it: the first line, without the source file and
    C++ signature it starts with ("[ONNXRuntimeError] : 1 : FAIL : /src/x.cc:256 f(...) Why")."""
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if text.startswith("[ONNXRuntimeError]"):
        body = text.split(" : ", 3)[-1]  # "[ONNXRuntimeError] : 1 : FAIL : /src/x.cc:256 f(...) Why"
        if body.startswith("/") and " " in body:  # "/src/x.cc:256 f(...) Why": skip the location and signature
            body = body.split(" ", 1)[1]
            depth, cut = 0, 0
            for i, ch in enumerate(body):
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        cut = i + 1
                        break
            body = body[cut:].strip() or body
        text = body
    return text[:300]
