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

Standard library only: this module ships in every artifact (the Lambda handler does not use it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Mapping

from .budget import RequestBudget, json_part
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
            return await send_error(send, 503, (
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
            return await send_error(send, 413, str(problem), close=True)
        try:
            body = await asyncio.wait_for(self._read(receive), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await send_error(send, 408, f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s",
                                    close=True)
        except RequestError as exc:  # over the limit while arriving (its rest was drained)
            return await send_error(send, 413, str(exc), close=True)
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
                return await send_error(send, 400, str(exc))
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


async def send_error(send: Send, status: int, message: str, headers: Mapping[str, str] | None = None,
                     close: bool = False) -> None:
    """A JSON {"error": ...} reply; `close`: the connection ends after it."""
    body = json.dumps({"error": message}).encode()
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *extra, *([(b"connection", b"close")] if close else [])],
    })
    await send({"type": "http.response.body", "body": body})
