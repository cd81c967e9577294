"""The ASGI middleware in front of every route of a served app (the Bento service, and
`mlpack serve`'s Function URL front): each request is read, measured and refused, or let
through, before the application parses a byte of it.

- **One worker holds at most `limits.max_concurrency` requests with a body.** The next
  wait for a slot with their bodies unread (the server stops reading a connection whose
  buffer is full), for up to `SLOT_WAIT_S`, then get 503. With the per-request bound of
  budget.py this bounds a worker's memory (docs/serving.md).
- **A body over the limit gets 413, readably.** A client that waits for `100 Continue`
  gets it at once. Any other client is writing the whole body before it reads the reply
  (Python's urllib does): closing the connection on an unread body makes the kernel reset
  it, and the client never sees the 413. So what it sends is read and dropped first, up
  to `DRAIN_LIMIT_BYTES`; past that the connection is closed.
- **The body must arrive within `BODY_TIMEOUT_S`** (408), so a slow sender cannot keep a
  slot.
- **JSON is measured before it is parsed**: `RequestBudget.check_json` (400). The body
  then reaches the application whole, as one message.

Its errors come in the body of the route asked (errors.error_json). `ErrorBodies`, the
Bento's other middleware, puts the errors BentoML and Starlette answer themselves in
errors.py's body too.

Standard library only: this module ships in every artifact (the Lambda handler does not use it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Mapping

from .budget import RequestBudget, json_part
from .errors import error_body, error_json, is_protocol_v2
from .limits import MIB
from .validation import RequestError

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SLOT_WAIT_S = 60.0
BODY_TIMEOUT_S = 60.0
# Bodies up to this size are read to the end before a 413 (a few tenths of a second on a
# local link); a larger one is cut off, and its client may see a reset instead.
DRAIN_LIMIT_BYTES = 256 * MIB
# Methods whose requests carry no body (unless they declare one): passed through, outside
# the slots (health probes must not queue behind inferences).
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})
INLINE_SCAN_BYTES = 256 * 1024  # JSON up to this size is measured on the event loop itself
_HEADER_LENGTH = b"inference-header-content-length"  # the JSON part of a binary v2 request


class RequestGuard:
    def __init__(self, app: App, budget: RequestBudget, check_json: bool = True) -> None:
        self.app = app
        self.budget = budget
        self.check_json = check_json  # False where the application measures its JSON itself
        self._slots = asyncio.Semaphore(budget.limits.max_concurrency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _bodiless(scope):
            return await self.app(scope, receive, send)
        try:
            await asyncio.wait_for(self._slots.acquire(), SLOT_WAIT_S)
        except asyncio.TimeoutError:
            return await send_error(scope, send, 503, (
                f"the service is busy: {self.budget.limits.max_concurrency} requests were in progress for "
                f"{SLOT_WAIT_S:.0f} s; retry later, or run more replicas"), {"retry-after": "5"})
        try:
            await self._guarded(scope, receive, send)
        finally:
            self._slots.release()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {key.lower(): value for key, value in scope.get("headers", ())}
        declared = _content_length(headers)
        problem = self.budget.body_problem(declared) if declared is not None else None
        if problem is not None:
            # A client waiting for 100 Continue sends nothing unless the body is read.
            if headers.get(b"expect", b"").lower() != b"100-continue" and declared <= DRAIN_LIMIT_BYTES:
                await _within(BODY_TIMEOUT_S, _drain(receive, 0))
            return await send_error(scope, send, 413, str(problem), close=True)
        try:
            body = await asyncio.wait_for(self._read(receive), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await send_error(scope, send, 408, f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s",
                                    close=True)
        except RequestError as exc:  # over the limit while arriving (its rest was drained)
            return await send_error(scope, send, 413, str(exc), close=True)
        if body is None:
            return  # the client left
        length = headers.get(_HEADER_LENGTH)
        parsed = json_part(body, headers.get(b"content-type", b"").decode("latin-1"),
                           None if length is None else length.decode("latin-1"))
        if parsed is not None and self.check_json:
            try:
                if len(parsed) <= INLINE_SCAN_BYTES:
                    self.budget.check_json(parsed)
                else:  # tens of milliseconds for megabytes: off the event loop, which serves everyone
                    await asyncio.get_running_loop().run_in_executor(None, self.budget.check_json, parsed)
            except RequestError as exc:
                return await send_error(scope, send, 400, str(exc))
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            problem = self.budget.body_problem(size, complete=False)
            if problem is not None:
                chunks.clear()
                if message.get("more_body"):
                    await _drain(receive, size)
                raise problem
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


async def _drain(receive: Receive, drained: int) -> None:
    """Read and drop the rest of a body, up to DRAIN_LIMIT_BYTES in all."""
    while drained <= DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _within(timeout_s: float, work: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(work, timeout_s)
    except asyncio.TimeoutError:
        pass  # answer anyway; the connection is closed after it


def _bodiless(scope: Scope) -> bool:
    if scope.get("method", "GET") not in BODILESS:
        return False
    headers = dict(scope.get("headers", ()))
    return b"transfer-encoding" not in headers and headers.get(b"content-length", b"0") == b"0"


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the server's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict:
        return pending.pop() if pending else await receive()

    return replayed


def _content_length(headers: Mapping[bytes, bytes]) -> int | None:
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


async def send_error(scope: Scope, send: Send, status: int, message: str, headers: Mapping[str, str] | None = None,
                     close: bool = False) -> None:
    """An error reply in the body of the route asked (errors.error_json); `close`: the
    connection ends after it."""
    body = error_json(scope.get("path", ""), message)
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *extra, *([(b"connection", b"close")] if close else [])],
    })
    await send({"type": "http.response.body", "body": body})


class ErrorBodies:
    """Errors the web framework answers itself, before or around mlpack's code, in
    errors.py's body: BentoML's validation of /predict_batch (a pydantic dump), the list
    it wraps an API's 4xx in, its 500 text, Starlette's 404 and 405. An answer already in
    that body, an Open Inference Protocol route's (its own body) and a HEAD's pass as they are."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "HEAD" or is_protocol_v2(scope.get("path", "")):
            return await self.app(scope, receive, send)
        held: dict | None = None
        chunks: list[bytes] = []

        async def rewrite(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # sent with the body, once it is whole
                return
            if held is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = dict(held.get("headers", ()))
            if not _ours(body):
                body = json.dumps(framework_error(held["status"], body)).encode()
                headers.update({b"content-type": b"application/json", b"content-length": str(len(body)).encode()})
            await send({**held, "headers": list(headers.items())})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _ours(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) and "message" in parsed["error"]


def framework_error(status: int, body: bytes) -> dict[str, Any]:
    """errors.py's body for an error BentoML or Starlette answered: its message, and for
    pydantic's validation errors (`{"error": "1 validation error for Input", "detail":
    [{"type", "loc", "msg"}]}`) the first error, in mlpack's words where it is mlpack's."""
    try:
        parsed = json.loads(body)
    except ValueError:  # Starlette's text ("Not Found"), or nothing
        return error_body(body.decode("utf-8", "replace").strip() or f"HTTP {status}")
    if isinstance(parsed, list) and parsed:  # BentoML's 4xx of an API: [{"error": ...}]
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return error_body(str(parsed))
    detail = parsed.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return _validation_error(detail[0])
    return error_body(str(parsed.get("error", parsed)))


def _validation_error(error: Mapping[str, Any]) -> dict[str, Any]:
    kind, message = error.get("type"), str(error.get("msg", ""))
    where = [str(part) for part in error.get("loc") or []]
    field = where[0] if where else None
    if kind == "json_invalid":
        return error_body(f"the request body is not valid JSON: {message.removeprefix('Invalid JSON: ')}")
    if kind == "value_error":  # mlpack's own check (a RequestError in a validator), or numpy's
        return error_body(message.removeprefix("Value error, "), input=field)
    if kind == "missing":
        return error_body(f"missing {field!r}" if field else "the request body is empty", input=field)
    return error_body(f"{'.'.join(where) or 'the request body'}: {message}", input=field)
