"""The worker process: sessions in the onnxruntime a target pins, on behalf of mlpack.

Started by `remote.py` with `python -s -E worker.py ENV RUNTIME READ_FD WRITE_FD`, where ENV
holds the pinned onnxruntime (and numpy) and RUNTIME is mlpack's serving runtime, which
is loaded as `mlpack_runtime`, as every artifact loads it: sessions are opened by the
same `open_session` that serves. It imports only the standard library, numpy and that
onnxruntime, never mlpack, and answers one request at a time on its pipe (its stdout and
stderr stay free for onnxruntime's own messages).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from multiprocessing.connection import Connection


def _load_runtime(folder: str):
    spec = importlib.util.spec_from_file_location(
        "mlpack_runtime", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlpack_runtime"] = module
    spec.loader.exec_module(module)
    return module


def _args(node_args) -> list[tuple[str, list, str]]:
    return [(a.name, list(a.shape) if a.shape is not None else None, a.type) for a in node_args]


class Worker:
    def __init__(self, runtime_folder: str) -> None:
        import onnxruntime

        self.ort = onnxruntime
        self.config = _load_runtime(runtime_folder).config
        self.sessions: dict[int, object] = {}

    def info(self) -> dict:
        from onnxruntime.capi import build_and_package_info as build

        return {"package": build.package_name, "version": self.ort.__version__,
                "providers": self.ort.get_available_providers(),
                "cuda_version": getattr(build, "cuda_version", "")}

    def probe(self, model: bytes) -> str:
        """'' when this onnxruntime loads the serialized model, else the first line of why not."""
        try:
            self.config.open_session(model, {}, ["CPUExecutionProvider"])
        except Exception as exc:
            return (str(exc).strip() or type(exc).__name__).splitlines()[0]
        return ""

    def open(self, source, settings: dict, providers: list[str], external_data_folder: str | None) -> dict:
        session = self.config.open_session(source, settings, providers, external_data_folder)
        sid = len(self.sessions) + 1
        self.sessions[sid] = session
        o = session.get_session_options()
        options = {"graph_optimization_level": str(o.graph_optimization_level),
                   "intra_op_num_threads": o.intra_op_num_threads, "inter_op_num_threads": o.inter_op_num_threads,
                   "enable_cpu_mem_arena": o.enable_cpu_mem_arena, "log_severity_level": o.log_severity_level}
        return {"id": sid, "inputs": _args(session.get_inputs()), "outputs": _args(session.get_outputs()),
                "providers": session.get_providers(), "options": options}

    def run(self, sid: int, names, feed: dict) -> tuple[list, float]:
        session = self.sessions[sid]
        started = time.perf_counter()
        values = session.run(names, feed)
        return values, (time.perf_counter() - started) * 1000

    def close(self, sid: int) -> None:
        self.sessions.pop(sid, None)


def serve(conn_in: Connection, conn_out: Connection, worker: Worker) -> None:
    while True:
        try:
            verb, args = conn_in.recv()
        except EOFError:  # mlpack went away: so does the worker
            return
        try:
            conn_out.send(("ok", getattr(worker, verb)(*args)))
        except Exception as exc:  # the caller raises it; the worker goes on
            conn_out.send(("error", str(exc) or type(exc).__name__))


def main() -> None:
    env, runtime_folder, read_fd, write_fd = sys.argv[1:5]
    sys.path.insert(0, env)
    conn_in, conn_out = Connection(int(read_fd), writable=False), Connection(int(write_fd), readable=False)
    try:
        worker = Worker(runtime_folder)
    except Exception as exc:
        conn_out.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn_out.send(("ok", worker.info()))
    serve(conn_in, conn_out, worker)


if __name__ == "__main__":
    main()
