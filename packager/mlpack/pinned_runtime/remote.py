"""TOOL: a worker process running the pinned onnxruntime, and sessions that live in it.

`RemoteSession` answers the few calls mlpack makes of an `onnxruntime.InferenceSession`
(`get_inputs`, `get_outputs`, `get_providers`, `run`), so the optimizer's code does not
care in which process a session lives. `run_timed` returns the time the worker measured
around `session.run` alone, so latency is never the pipe's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from ..errors import MlpackError
from ..resources import runtime_dir

WORKER = Path(__file__).with_name("worker.py")


@dataclass(frozen=True)
class NodeArg:
    """What onnxruntime's NodeArg tells: name, shape (ints, names or None), type."""

    name: str
    shape: list | None
    type: str


class Worker:
    """One worker process; calls are serialized (one request at a time on its pipe)."""

    def __init__(self, env: Path, label: str) -> None:
        self.label = label
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        # A file, not a pipe: a chatty onnxruntime could fill a pipe nobody reads and block.
        self._stderr = tempfile.TemporaryFile()
        # -I -S: nothing of this interpreter's site-packages (its own onnxruntime) is seen.
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER), str(env), str(runtime_dir()), str(to_worker_r),
             str(from_worker_w)],
            pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._send, self._recv = Connection(to_worker_w, readable=False), Connection(from_worker_r, writable=False)
        self._lock = threading.Lock()
        self.info: dict[str, Any] = self._answer()

    def call(self, verb: str, *args: Any, wait: bool = True) -> Any:
        """The worker's answer to VERB(*ARGS); without `wait`, nothing when another call is under way."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            try:
                self._send.send((verb, args))
            except (BrokenPipeError, OSError):
                raise self._died() from None
            return self._answer()
        finally:
            self._lock.release()

    def _answer(self) -> Any:
        try:
            status, value = self._recv.recv()
        except EOFError:
            raise self._died() from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def _died(self) -> MlpackError:
        self.process.wait(timeout=10)
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace").strip().splitlines()
        return MlpackError(f"the {self.label} worker process stopped (exit {self.process.returncode}): "
                           f"{err[-1] if err else 'no output'}", "rerun with --debug")

    def close(self) -> None:
        for conn in (self._send, self._recv):
            conn.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


class RemoteSession:
    """A session in the worker, used like onnxruntime's InferenceSession."""

    def __init__(self, worker: Worker, source: str | bytes, settings: dict, providers: Sequence[str],
                 external_data_folder: str | None) -> None:
        self._worker = worker
        opened = worker.call("open", source, dict(settings), list(providers), external_data_folder)
        self._id = opened["id"]
        self._inputs = [NodeArg(*a) for a in opened["inputs"]]
        self._outputs = [NodeArg(*a) for a in opened["outputs"]]
        self._providers = opened["providers"]
        self._options = SimpleNamespace(**opened["options"])

    def get_inputs(self) -> list[NodeArg]:
        return self._inputs

    def get_outputs(self) -> list[NodeArg]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return self._providers

    def get_session_options(self) -> SimpleNamespace:
        """The session's options as the worker read them (the graph level as its name)."""
        return self._options

    def run(self, names, feed: dict) -> list:
        return self.run_timed(names, feed)[0]

    def run_timed(self, names, feed: dict) -> tuple[list, float]:
        """The outputs, and the milliseconds `session.run` took inside the worker."""
        return self._worker.call("run", self._id, names, feed)

    def __del__(self) -> None:
        try:
            self._worker.call("close", self._id, wait=False)
        except Exception:  # the worker may be gone already (interpreter shutdown)
            pass
