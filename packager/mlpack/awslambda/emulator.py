"""A local stand-in for the Lambda Runtime API, enough for awslambdaric to run a handler.

awslambdaric long-polls /invocation/next for events and posts each result back, exactly
as it does inside Lambda; this server queues events and collects the results. The build
uses it to measure a function's cold start as Lambda runs it (`measure.py`), and
the tests to invoke a packaged handler.

It also records when things happen, so that a cold start splits as Lambda reports it:
the runtime's first request (`/invocation/next`, or `/restore/next` under SnapStart) ends
the init phase; the reply ends the first invoke. With SnapStart
(`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`) awslambdaric runs the before-snapshot
hooks, asks `/restore/next` (answered at once: the "restore"), then runs the
after-restore hooks before its first `/invocation/next`.
"""

from __future__ import annotations

import json
import queue
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class RuntimeAPI:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results: dict[str, queue.Queue] = {}
        self.init_error: Any = None
        self.restore_error: Any = None
        # perf_counter() times: the runtime's first request (init done), the restore
        # request (SnapStart), each event handed out and each result received.
        self.first_request_at: float | None = None
        self.restored_at: float | None = None
        self.handed_out: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self._seen = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Small replies on a kept-alive connection: without this, Nagle's
                # algorithm holds each one back ~40 ms, which a cold start would count.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                api._mark_first_request()
                if self.path == f"{PREFIX}/restore/next":
                    api.restored_at = time.perf_counter()
                    return self._reply(200, b"")
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404)
                item = api.events.get()
                if item is None:  # closing: the runtime's long poll ends with its connection
                    self.close_connection = True
                    return
                request_id, event = item
                api.handed_out[request_id] = time.perf_counter()
                self._reply(200, json.dumps(event).encode(), {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": "9999999999999",
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:test",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    "Content-Type": "application/json",
                })

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.init_error = json.loads(body or b"null")
                    api._mark_first_request()
                elif parts[:2] == ["restore", "error"]:
                    api.restore_error = json.loads(body or b"null")
                elif parts[0] == "invocation" and len(parts) == 3 and parts[2] in ("response", "error"):
                    api.answered[parts[1]] = time.perf_counter()
                    api.results[parts[1]].put((parts[2], json.loads(body or b"null")))
                else:
                    return self._reply(404)
                self._reply(202, b"{}")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _mark_first_request(self) -> None:
        if self.first_request_at is None:
            self.first_request_at = time.perf_counter()
        self._seen.set()

    def queue_event(self, event: Any) -> str:
        """Queue an event for the runtime's next /invocation/next; returns its request id."""
        request_id = str(uuid.uuid4())
        self.results[request_id] = queue.Queue()
        self.events.put((request_id, event))
        return request_id

    def result(self, request_id: str, timeout: float = 60) -> tuple[str, Any]:
        """Wait for a queued event's ("response" | "error", body)."""
        return self.results[request_id].get(timeout=timeout)

    def invoke(self, event: Any, timeout: float = 60) -> tuple[str, Any]:
        """Queue an event and wait for the runtime's ("response" | "error", body)."""
        return self.result(self.queue_event(event), timeout)

    def wait_for_runtime(self, timeout: float) -> bool:
        """Wait until the runtime made its first request (its init is over)."""
        return self._seen.wait(timeout)

    def close(self) -> None:
        self.events.put(None)  # releases a runtime's pending /invocation/next
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A runtime that is killed (the end of every measured run) drops its connection.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
