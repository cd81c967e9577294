"""The one error body of the routes mlpack serves, in the Bento service and the Lambda handler:

    {"error": {"message": "...", "input": "<input name>", "hint": "..."}}

`message` says what is wrong (and, in most messages, what to do); `input` names the input
at fault where one is; `hint` is advice a message does not already carry. The status comes
from the exception (`reply_for`): 400 for a request that does not fit (`RequestError`,
onnxruntime refusing the request's tensors included: served.py), 413 for a body over the
limit (`BodyTooLarge`), 500 when the model or the service fails. asgi.py adds 408 and 503
and wraps the answers the web framework makes itself (BentoML's validation, 404, 405).

The Open Inference Protocol's routes (`/v2...`) keep the protocol's `{"error": "..."}`
(protocol_v2.Reply.error), with the same statuses. docs/serving.md lists every route's.

Standard library only, nothing imported at init that an error alone needs: the Lambda
handler imports this module on its cold start.
"""

from __future__ import annotations

import json
from typing import Any

from .limits import BodyTooLarge
from .validation import RequestError

PROTOCOL_V2 = "/v2"
FAILED = "the model failed on this request"


def error_body(message: str, *, input: str | None = None, hint: str | None = None) -> dict[str, Any]:
    """{"error": {"message", "input"?, "hint"?}}: the fields that are set, in that order."""
    error: dict[str, Any] = {"message": message}
    if input is not None:
        error["input"] = input
    if hint is not None:
        error["hint"] = hint
    return {"error": error}


def reply_for(exc: BaseException, path: str = "") -> tuple[int, dict[str, Any]]:
    """The status and body for an exception a request to `path` raised (under /v2 the
    protocol's body). A failure that is not the request's (500) is printed with its
    traceback to the server's or function's log."""
    if isinstance(exc, RequestError):
        status = 413 if isinstance(exc, BodyTooLarge) else 400
        if is_protocol_v2(path):
            return status, {"error": str(exc)}
        return status, error_body(exc.message, input=exc.input, hint=exc.hint)
    import traceback  # only when something failed: not imported at init

    traceback.print_exception(exc)
    message = f"{FAILED}: {first_line(exc)}"
    return 500, {"error": message} if is_protocol_v2(path) else error_body(message)


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (onnxruntime's messages run over several), or its type."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_protocol_v2(path: str) -> bool:
    return path == PROTOCOL_V2 or path.startswith(PROTOCOL_V2 + "/")


def error_json(path: str, message: str) -> bytes:
    """An error the transport answers itself (asgi.RequestGuard: 408, 413, 503, a body too
    big to parse), in the body of the route it was sent to."""
    return json.dumps({"error": message} if is_protocol_v2(path) else error_body(message)).encode()
