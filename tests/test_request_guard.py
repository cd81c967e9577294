"""mlpack_runtime.asgi's middleware driven by hand, message by message: what reaches the
application, what is read and dropped before a 413, what waits for a slot, the body each
error comes in (RequestGuard's, errors.reply_for's, ErrorBodies' rewrite of the framework's).
The served processes: tests/test_hostile_clients.py, tests/test_serve_errors.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from mlpack.runtime import asgi
from mlpack.runtime import errors
from mlpack.runtime.asgi import ErrorBodies, RequestGuard
from mlpack.runtime.budget import RequestBudget
from mlpack.runtime.limits import RequestLimits

PIXELS = [{"name": "pixels", "dtype": "float32", "shape": ["N", 64]}]


def guard(app, max_request_bytes: int = 10, **limits) -> RequestGuard:
    return RequestGuard(app, RequestBudget.of(RequestLimits(max_request_bytes=max_request_bytes, **limits), PIXELS))


class Recorder:
    """An inner ASGI app that reads the whole body and answers 200 with it."""

    def __init__(self) -> None:
        self.bodies: list[list[bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(chunks)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(chunks)})


def run(app, chunks: list[bytes], headers: list[tuple[bytes, bytes]], method: str = "POST", path: str = "/predict"):
    """(status, reply body, sent messages, sizes of the chunks the server handed out)."""
    read: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        if len(read) == len(chunks):
            return {"type": "http.disconnect"}
        read.append(len(chunks[len(read)]))
        return {"type": "http.request", "body": chunks[len(read) - 1], "more_body": len(read) < len(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path, "headers": headers}, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, sent, read


def test_a_declared_length_over_the_limit_is_read_and_dropped_before_the_413() -> None:
    inner = Recorder()
    status, body, sent, read = run(guard(inner), [b"x" * 6, b"x" * 5], [(b"content-length", b"11")])
    # Read to the end (a client such as urllib is still writing it), never handed to the app.
    assert (status, read, inner.bodies) == (413, [6, 5], [])
    assert json.loads(body)["error"]["message"].startswith("the request body (11 bytes) is over this service's limit of 10 bytes")
    assert (b"connection", b"close") in sent[0]["headers"]


def test_a_client_waiting_for_100_continue_gets_the_413_without_sending_the_body() -> None:
    status, _, _, read = run(guard(Recorder()), [b"x" * 11], [(b"content-length", b"11"), (b"expect", b"100-continue")])
    assert (status, read) == (413, [])


def test_a_body_past_the_drain_limit_is_not_read_at_all(monkeypatch) -> None:
    monkeypatch.setattr(asgi, "DRAIN_LIMIT_BYTES", 100)
    status, _, _, read = run(guard(Recorder()), [b"x" * 200], [(b"content-length", b"200")])
    assert (status, read) == (413, [])


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_its_rest_dropped() -> None:
    inner = Recorder()
    status, body, _, read = run(guard(inner), [b"x" * 6, b"x" * 6, b"x" * 6], [(b"transfer-encoding", b"chunked")])
    assert (status, read, inner.bodies) == (413, [6, 6, 6], [])
    assert json.loads(body)["error"]["message"].startswith("the request body is over this service's limit of 10 bytes")


def test_a_body_within_the_limits_reaches_the_app_whole_as_one_message() -> None:
    inner = Recorder()
    status, body, _, _ = run(guard(inner, 100), [b'{"inputs": ', b'{"pixels": []}}'], [(b"content-length", b"26")])
    assert (status, body, inner.bodies) == (200, b'{"inputs": {"pixels": []}}', [[b'{"inputs": {"pixels": []}}']])


@pytest.mark.parametrize("size", [1_000, 200_000])  # measured on the event loop, and in a thread
def test_json_over_the_budget_is_a_400_before_the_app_sees_it(size: int) -> None:
    inner = Recorder()
    status, body, _, _ = run(guard(inner, 2**20), [b"[" * size + b"]" * size], [(b"content-type", b"application/json")])
    assert (status, inner.bodies) == (400, [])
    assert json.loads(body)["error"]["message"].startswith(f"the request's JSON is nested {size:,} levels deep")
    # Uploads are files the app decodes (checked by size only); binary tensors are not JSON.
    deep = b"[" * 1000
    assert run(guard(inner, 2**20), [deep], [(b"content-type", b"multipart/form-data; boundary=b")])[0] == 200
    assert run(guard(inner, 2**20), [b"{}" + deep], [(b"inference-header-content-length", b"2")])[0] == 200


def test_health_probes_pass_through_untouched() -> None:
    async def probe(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status, _, _, read = run(guard(probe), [b""], [], method="GET")
    assert (status, read) == (204, [])


def test_a_slow_body_gets_a_408_and_gives_its_slot_back(monkeypatch) -> None:
    monkeypatch.setattr(asgi, "BODY_TIMEOUT_S", 0.2)
    app = guard(Recorder(), 100, max_concurrency=1)

    async def scenario() -> list[int]:
        statuses: list[int] = []

        async def stalled() -> dict:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def whole() -> dict:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        await app({"type": "http", "method": "POST", "headers": []}, stalled, send)
        await app({"type": "http", "method": "POST", "headers": []}, whole, send)  # the slot is free again
        return statuses

    assert asyncio.run(scenario()) == [408, 200]


def test_requests_past_the_slots_wait_unread_then_get_a_503(monkeypatch) -> None:
    monkeypatch.setattr(asgi, "SLOT_WAIT_S", 0.2)

    async def scenario() -> tuple[list[int], list[str]]:
        gate = asyncio.Event()
        order: list[str] = []

        async def slow_app(scope, receive, send) -> None:
            order.append(f"start {scope['name']}")
            await receive()
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app = RequestGuard(slow_app, RequestBudget.of(RequestLimits(max_concurrency=1), PIXELS))
        statuses: list[int] = []

        async def call(name: str) -> None:
            async def receive() -> dict:
                order.append(f"read {name}")
                return {"type": "http.request", "body": b"{}", "more_body": False}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app({"type": "http", "method": "POST", "headers": [], "name": name}, receive, send)

        first = asyncio.create_task(call("a"))
        await asyncio.sleep(0.05)
        await call("b")  # waits for the one slot, its body unread, then gives up
        gate.set()
        await first
        return statuses, order

    statuses, order = asyncio.run(scenario())
    assert statuses == [503, 200]
    assert order == ["read a", "start a"]  # b's body was never read


def test_an_app_failure_of_its_own_still_propagates() -> None:
    async def failing(scope, receive, send) -> None:
        raise ValueError("the app's own bug")

    with pytest.raises(ValueError, match="the app's own bug"):
        run(guard(failing), [b"{}"], [])


def test_its_errors_come_in_the_body_of_the_route_asked() -> None:
    """mlpack's body on mlpack's routes, the Open Inference Protocol's under /v2."""
    bodies = {path: json.loads(run(guard(Recorder()), [b"x" * 11], [(b"content-length", b"11")], path=path)[1])
              for path in ("/predict", "/v2/models/m/infer")}
    message = bodies["/v2/models/m/infer"]["error"]
    assert message.startswith("the request body (11 bytes) is over this service's limit of 10 bytes")
    assert bodies["/predict"] == {"error": {"message": message}}


def answering(status: int, body: bytes, content_type: bytes = b"application/json"):
    """An inner app that answers every request with this status and body, as BentoML would."""
    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


VALIDATION = {"error": "1 validation error for Input", "detail": [
    {"type": "value_error", "loc": ["x"], "msg": "Value error, input 'x' holds nan at [0, 2]: send finite numbers",
     "url": "https://errors.pydantic.dev/2.13/v/value_error"}]}


@pytest.mark.parametrize("status, body, content_type, error", [
    (400, json.dumps(VALIDATION).encode(), b"application/json",
     {"message": "input 'x' holds nan at [0, 2]: send finite numbers", "input": "x"}),
    (400, b'{"error": "1 validation error for Input", "detail": [{"type": "json_invalid", "loc": [], '
          b'"msg": "Invalid JSON: key must be a string at line 1 column 2"}]}', b"application/json",
     {"message": "the request body is not valid JSON: key must be a string at line 1 column 2"}),
    (400, b'{"error": "1 validation error for Input", "detail": [{"type": "missing", "loc": ["file"], '
          b'"msg": "Field required"}]}', b"application/json", {"message": "missing 'file'", "input": "file"}),
    (400, b'[{"error": "an API raised InvalidArgument"}]', b"application/json",
     {"message": "an API raised InvalidArgument"}),
    (500, b'{"error": "An unexpected error has occurred, please check the server log."}', b"application/json",
     {"message": "An unexpected error has occurred, please check the server log."}),
    (405, b"Method Not Allowed", b"text/plain; charset=utf-8", {"message": "Method Not Allowed"}),
], ids=["validator", "invalid-json", "missing-field", "api-list", "bentoml-500", "starlette-text"])
def test_errors_the_framework_answers_get_mlpacks_body(status, body, content_type, error) -> None:
    got_status, got, sent, _ = run(ErrorBodies(answering(status, body, content_type)), [b"{}"], [])
    assert (got_status, json.loads(got)) == (status, {"error": error})
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(got)


@pytest.mark.parametrize("path, status, body", [
    ("/predict", 400, b'{"error": {"message": "already mlpack\'s"}}'),
    ("/v2/models/m/infer", 400, b'{"error": "the protocol\'s own"}'),
    ("/predict", 200, b'[{"error": "a 200 is an answer, whatever it holds"}]'),
])
def test_answers_that_are_not_the_frameworks_errors_pass_untouched(path: str, status: int, body: bytes) -> None:
    assert run(ErrorBodies(answering(status, body)), [b"{}"], [], path=path)[:2] == (status, body)


def test_a_failure_that_is_not_the_requests_is_a_500_in_the_same_body_and_logged(capsys) -> None:
    try:
        raise RuntimeError("CUDA failure 700: an illegal memory access\nmore lines")
    except RuntimeError as exc:
        failed = exc
    message = "the model failed on this request: CUDA failure 700: an illegal memory access"
    assert errors.reply_for(failed) == (500, {"error": {"message": message}})
    assert errors.reply_for(failed, "/v2/models/m/infer") == (500, {"error": message})
    assert "Traceback" in capsys.readouterr().err  # the server's or the function's log
