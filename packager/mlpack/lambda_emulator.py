"""A local stand-in for the Lambda Runtime API, enough for awslambdaric to run a handler.

awslambdaric long-polls /invocation/next for events and posts each result back, exactly
as it does inside Lambda; this server queues events and collects the results. `ready` is
set when the runtime first asks for an event: the function's init (imports, session) is
done. `mlpack serve` runs Lambda artifacts under it (serve/function_url.py is the HTTP
front); tests use it to invoke handlers.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


class RuntimeAPI:
    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results: dict[str, queue.Queue] = {}
        self.init_error: Any = None
        self.ready = threading.Event()  # the runtime has finished init and polls for events
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404)
                api.ready.set()
                request_id, event = api.events.get()
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
                elif parts[0] == "invocation" and parts[2] in ("response", "error"):
                    api.results[parts[1]].put((parts[2], json.loads(body or b"null")))
                else:
                    return self._reply(404)
                self._reply(202, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: Any, timeout: float = 60) -> tuple[str, Any]:
        """Queue an event and wait for the runtime's ("response" | "error", body)."""
        request_id = str(uuid.uuid4())
        self.results[request_id] = queue.Queue()
        self.events.put((request_id, event))
        return self.results[request_id].get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
