"""An HTTP front for a Lambda function running locally: each request becomes a Function URL
event (payload format 2.0), as AWS Lambda Function URLs send it, and the handler's reply
becomes the HTTP response, with the rules Function URLs apply.

    front = FunctionUrlFront(runtime_api, host="127.0.0.1", port=3000, budget=lambda_budget(app, name)).start()

Besides forwarding, the front answers `GET /readyz` itself: 200 once the runtime has
finished the function's init and asks for events, 503 before (or with the init error).
That route exists only locally; a deployed Function URL forwards every path.

It is as sturdy as the Bento's server, with the same parts: uvicorn (a listen backlog of
`BACKLOG`, chunked bodies, `IDLE_TIMEOUT_S` for kept-alive connections), the request-head
deadline of mlpack_runtime.uvicorn_guard, and mlpack_runtime.asgi.RequestGuard: the body
limit applied while the body arrives (the handler's own limit, at most a Function URL's
6 MB payload), a readable 413 (the body read and dropped first), at most
`max_concurrency` requests read at once. Events go to the one local runtime in turn, as
to one execution environment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import socket
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn

from .emulator import RuntimeAPI
from ..runtime.asgi import RequestGuard
from ..runtime.budget import RequestBudget, served_inputs
from ..runtime.config import load_runtime
from ..runtime.limits import RequestLimits
from ..runtime.uvicorn_guard import HeadDeadlineProtocol

READY_PATH = "/readyz"
INVOKE_TIMEOUT_S = 60.0
URL_ID = "local"  # the <url-id> part of a Function URL's domain
# A Function URL refuses request payloads over 6 MB (6,291,456 bytes) before the function runs.
FUNCTION_URL_MAX_BYTES = 6 * 2**20
BACKLOG = 2048  # uvicorn's default, and BentoML's
IDLE_TIMEOUT_S = 5  # a kept-alive connection with no next request is closed after this
_STARTUP_S = 10.0
# Content types a Function URL passes as text; any other body arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "application/yaml",
               "application/x-www-form-urlencoded", "+json", "+xml")


def is_text(content_type: str) -> bool:
    """Whether a Function URL passes a body of this type as text (no type: binary, base64)."""
    kind = content_type.split(";")[0].strip().lower()
    return bool(kind) and any(kind.startswith(t) or kind.endswith(t) for t in _TEXT_TYPES)


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes,
                       source_ip: str = "127.0.0.1") -> dict[str, Any]:
    """The event a Function URL sends the function for one HTTP request (payload format 2.0)."""
    url = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers.items()}
    text = is_text(lowered.get("content-type", ""))
    now = datetime.now(timezone.utc)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": lowered.get("host", f"{URL_ID}.lambda-url.localhost"),
            "domainPrefix": URL_ID,
            "http": {"method": method, "path": url.path or "/", "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": lowered.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": bool(body) and not text,
    }
    if url.query:
        event["queryStringParameters"] = dict(parse_qsl(url.query, keep_blank_values=True))
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";") if c.strip()]
    if body:
        event["body"] = base64.b64encode(body).decode() if event["isBase64Encoded"] else body.decode("utf-8", "replace")
    return event


def http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """A function's reply as a Function URL turns it into HTTP: a {"statusCode": ...} object
    as given, anything else as a 200 JSON body."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        headers.setdefault("content-type", "application/json")
        return int(result["statusCode"]), headers, raw
    return 200, {"content-type": "application/json"}, json.dumps(result).encode()


def lambda_budget(app: Path, name: str) -> RequestBudget:
    """What the front lets through to the handler in `app` (its runtime.json): the handler's
    own body limit, at most a Function URL's; a 413 names the protocol's binary route."""
    config = load_runtime(app / "runtime.json")
    limits = replace(config.limits, max_request_bytes=min(config.limits.max_request_bytes, FUNCTION_URL_MAX_BYTES))
    return RequestBudget.of(limits, served_inputs(config),
                            binary_routes=(f"POST /v2/models/{name}/infer with binary tensor data",))


class FunctionUrlFront:
    def __init__(self, api: RuntimeAPI, host: str = "127.0.0.1", port: int = 3000,
                 budget: RequestBudget | None = None) -> None:
        self.api = api
        # The handler measures its own JSON, as on AWS: the front only bounds the body.
        app = RequestGuard(self._asgi, budget or RequestBudget.of(RequestLimits(FUNCTION_URL_MAX_BYTES), []), check_json=False)
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.address = f"{host}:{self._socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, http=HeadDeadlineProtocol, lifespan="off", log_config=None, access_log=False,
            backlog=BACKLOG, timeout_keep_alive=IDLE_TIMEOUT_S, timeout_graceful_shutdown=5, server_header=False,
        ))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="function-url-front")

    def start(self) -> FunctionUrlFront:
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Function URL front did not start on {self.address}")
            time.sleep(0.02)
        return self

    async def _asgi(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:  # RequestGuard hands over the body whole (bounded); a GET's is empty
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == READY_PATH:
            status, headers, body = self.readiness()
        else:
            target = scope["raw_path"].decode("latin-1") + (
                "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else "")
            request_headers: dict[str, str] = {}
            for key, value in scope["headers"]:  # repeated headers join with commas, as Lambda does
                name = key.decode("latin-1")
                text = value.decode("latin-1")
                request_headers[name] = f"{request_headers[name]},{text}" if name in request_headers else text
            event = function_url_event(method, target, request_headers, b"".join(chunks),
                                       (scope.get("client") or ("127.0.0.1", 0))[0])
            status, headers, body = await asyncio.get_running_loop().run_in_executor(None, self.invoke, event)
        skip = ("content-length", "connection", "transfer-encoding")
        await send({"type": "http.response.start", "status": status, "headers": [
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k.lower() not in skip),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    def readiness(self) -> tuple[int, dict[str, str], bytes]:
        if self.api.init_error is not None:
            return 503, {"content-type": "application/json"}, json.dumps(
                {"status": "init failed", "error": self.api.init_error}).encode()
        if self.api.first_request_at is None:  # the runtime has not asked for an event yet: still in init
            return 503, {"content-type": "application/json"}, b'{"status": "starting"}'
        return 200, {"content-type": "application/json"}, b'{"status": "ready"}'

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        started = time.monotonic()
        try:
            kind, result = self.api.invoke(event, timeout=INVOKE_TIMEOUT_S)
        except queue.Empty:
            return 504, {"content-type": "application/json"}, json.dumps(
                {"message": f"the function did not answer within {time.monotonic() - started:.0f} s"}).encode()
        if kind == "error":  # a Function URL answers 502 when the function raises
            return 502, {"content-type": "application/json"}, json.dumps(result).encode()
        return http_response(result)

    def close(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._socket.close()
