"""An HTTP front for a Lambda function running locally: each request becomes a Function URL
event (payload format 2.0), as AWS Lambda Function URLs send it, and the handler's reply
becomes the HTTP response, with the rules Function URLs apply.

    front = FunctionUrlFront(runtime_api, host="127.0.0.1", port=3000).start()

Besides forwarding, the front answers `GET /readyz` itself: 200 once the runtime has
finished the function's init and asks for events, 503 before (or with the init error).
That route exists only locally; a deployed Function URL forwards every path.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..lambda_emulator import RuntimeAPI

READY_PATH = "/readyz"
INVOKE_TIMEOUT_S = 60.0
URL_ID = "local"  # the <url-id> part of a Function URL's domain
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


class FunctionUrlFront:
    def __init__(self, api: RuntimeAPI, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.api = api
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "GET" and urlsplit(self.path).path == READY_PATH:
                    return self._send(*front.readiness())
                event = function_url_event(self.command, self.path, dict(self.headers.items()), body,
                                           self.client_address[0])
                self._send(*front.invoke(event))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FunctionUrlFront:
        self._thread.start()
        return self

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
        self.server.shutdown()
        self.server.server_close()
