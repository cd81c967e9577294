"""Requests that cannot hurt the service: the body size, the rows and the numbers it accepts.

The limits come from the target's `[serving]` table (or the `mlpack build` options that
override it) through runtime.json, so an artifact carries the limits it was built with.
The same checks run in the Bento service and in the Lambda handler:

- a body over `max_request_bytes` is refused with HTTP 413 before it is read or parsed
  (`BodyLimitMiddleware` for ASGI servers; the Lambda handler checks the event's body);
- an input with more than `max_rows` rows is refused with HTTP 400 naming the input;
- NaN or infinite values in a float input are refused with HTTP 400 naming the input,
  unless the artifact was built with `--allow-non-finite`.

Standard library and numpy only: this module ships in every artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

from .validation import RequestError

MIB = 2**20
# Defaults when runtime.json has no `limits` (artifacts built before limits existed).
DEFAULT_MAX_REQUEST_BYTES = 8 * MIB
DEFAULT_MAX_ROWS = 1024
# The `mlpack build` options that change each limit: the messages tell the caller which.
REQUEST_SIZE_OPTION = "--max-request-mb"
ROWS_OPTION = "--max-rows"
NON_FINITE_OPTION = "--allow-non-finite"


class BodyTooLarge(RequestError):
    """The request body is over the artifact's limit (HTTP 413)."""


def _mib(size: int) -> str:
    return f"{size / MIB:.1f}".removesuffix(".0") + " MiB"


@dataclass(frozen=True)
class RequestLimits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    allow_non_finite: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RequestLimits:
        raw = raw or {}
        return cls(
            max_request_bytes=int(raw.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)),
            max_rows=int(raw.get("max_rows", DEFAULT_MAX_ROWS)),
            allow_non_finite=bool(raw.get("allow_non_finite", False)),
        )

    def body_problem(self, size: int, *, complete: bool = True) -> BodyTooLarge | None:
        """The 413 error for a body of `size` bytes (`complete=False`: received so far, its
        length undeclared), or None when it fits."""
        if size <= self.max_request_bytes:
            return None
        limit, measured = _mib(self.max_request_bytes), _mib(size)
        if measured == limit:  # just over: only bytes tell them apart
            limit, measured = f"{self.max_request_bytes:,} bytes", f"{size:,} bytes"
        measured = f" ({measured})" if complete else ""
        return BodyTooLarge(
            f"the request body{measured} is over this service's limit of {limit}: "
            f"send fewer rows per request, or rebuild the artifact with `mlpack build {REQUEST_SIZE_OPTION} N`"
        )

    def check_body(self, size: int) -> None:
        problem = self.body_problem(size)
        if problem is not None:
            raise problem

    def check_arrays(self, arrays: Mapping[str, np.ndarray], specs: list[Mapping[str, Any]]) -> None:
        """Raise RequestError (HTTP 400) naming the first input over the row limit or holding
        a non-finite number. `arrays` already fit the signature (validation.parse_inputs)."""
        for spec in specs:
            array = arrays.get(spec["name"])
            if not isinstance(array, np.ndarray):  # left out (optional), or a map or sequence input
                continue
            self._check_rows(spec, array)
            if not self.allow_non_finite:
                _check_finite(spec["name"], array)

    def input_checker(self, name: str, specs: list[Mapping[str, Any]]) -> Callable[[np.ndarray], np.ndarray]:
        """`check_arrays` for one input, as a validator: for routes whose framework parses
        and validates each request itself (BentoML's /predict_batch, before batching)."""
        spec = next(s for s in specs if s["name"] == name)

        def check(array: np.ndarray) -> np.ndarray:
            self.check_arrays({name: array}, [spec])
            return array

        return check

    def _check_rows(self, spec: Mapping[str, Any], array: np.ndarray) -> None:
        shape = spec.get("shape")
        batched = shape is None or (len(shape) > 0 and not isinstance(shape[0], int))
        if batched and array.ndim > 0 and array.shape[0] > self.max_rows:
            raise RequestError(
                f"input {spec['name']!r} has {array.shape[0]} rows, over this service's limit of "
                f"{self.max_rows} rows per request: split the request, or rebuild the artifact with "
                f"`mlpack build {ROWS_OPTION} N`"
            )


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind != "f" or array.size == 0:
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    where = [int(i) for i in np.argwhere(~finite)[0]]
    value = array[tuple(where)].item()
    raise RequestError(
        f"input {name!r} holds {value} at {where}: send finite numbers, or rebuild the artifact with "
        f"`mlpack build {NON_FINITE_OPTION}` if the model handles them"
    )


# --- ASGI: refuse a large body before the application reads it -----------------------

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyLimitMiddleware:
    """ASGI middleware: HTTP 413 {"error": ...} for a body over the limit.

    A declared Content-Length over the limit is answered at once, without reading a byte
    of the body. A body without one (chunked) is counted as it arrives: once past the
    limit the 413 goes out, the application is told the client left (`http.disconnect`)
    and whatever it still sends is dropped. Either way the connection is closed, so the
    server never buffers the rest."""

    def __init__(self, app: Callable, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        problem = self.limits.body_problem(declared) if declared is not None else None
        if problem is not None:
            return await _send_413(send, problem)
        received = 0
        started = refused = False

        async def counting_receive() -> dict:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                problem = self.limits.body_problem(received, complete=False)
                if problem is not None and not started:
                    refused = True
                    await _send_413(send, problem)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise  # the application's own failure; a refused body's disconnect is expected


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, problem: BodyTooLarge) -> None:
    body = json.dumps({"error": str(problem)}).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": body})
