"""The parts of `mlpack serve`: Function URL events and replies as AWS sends and reads
them, the front's readiness, and process groups that stop whole."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx

from mlpack.awslambda.emulator import PREFIX, RuntimeAPI
from mlpack.awslambda.function_url import FunctionUrlFront, function_url_event, http_response
from mlpack.serve.processes import Processes, group_members

from .agent_harness import free_port, wait_for


def test_a_json_request_becomes_a_function_url_event() -> None:
    event = function_url_event("POST", "/predict?debug=1&x=", {"Content-Type": "application/json", "Host": "h:1",
                                                               "Cookie": "a=1; b=2"}, b'{"inputs": {}}')
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/predict" and event["rawQueryString"] == "debug=1&x="
    assert event["queryStringParameters"] == {"debug": "1", "x": ""}
    assert event["headers"]["content-type"] == "application/json"  # header names lower-cased
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"] == {"method": "POST", "path": "/predict", "protocol": "HTTP/1.1",
                                               "sourceIp": "127.0.0.1", "userAgent": ""}
    assert event["body"] == '{"inputs": {}}' and event["isBase64Encoded"] is False


def test_a_binary_body_arrives_base64_encoded() -> None:
    event = function_url_event("POST", "/predict_npz", {"content-type": "application/octet-stream"}, b"\x00\xff")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xff"
    untyped = function_url_event("POST", "/v2/models/m/infer", {}, b"{}\x00")
    assert untyped["isBase64Encoded"] is True  # no content type: binary, as Function URLs take it


def test_replies_become_http_as_function_urls_make_them() -> None:
    assert http_response({"statusCode": 400, "headers": {"content-type": "application/json"},
                          "body": '{"error": "bad"}'}) == (400, {"content-type": "application/json"},
                                                           b'{"error": "bad"}')
    assert http_response({"statusCode": 200, "body": base64.b64encode(b"\x01").decode(),
                          "isBase64Encoded": True})[2] == b"\x01"
    # Anything without a statusCode is the JSON body of a 200.
    assert http_response({"outputs": {"y": [1]}}) == (200, {"content-type": "application/json"},
                                                      b'{"outputs": {"y": [1]}}')


def fake_runtime(api: RuntimeAPI, stop: threading.Event) -> None:
    """Poll for events as awslambdaric does; echo each event's path and body back."""
    base = f"http://{api.address}{PREFIX}"
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{base}/invocation/next", timeout=1) as reply:
                request_id = reply.headers["Lambda-Runtime-Aws-Request-Id"]
                event = json.loads(reply.read())
        except OSError:
            continue
        body = json.dumps({"statusCode": 201, "body": json.dumps({"path": event["rawPath"], "body": event["body"]})})
        urllib.request.urlopen(urllib.request.Request(f"{base}/invocation/{request_id}/response",
                                                      data=body.encode(), method="POST"), timeout=5).read()


def test_the_front_is_ready_once_the_runtime_polls_and_forwards_requests() -> None:
    api = RuntimeAPI()
    front = FunctionUrlFront(api, port=free_port()).start()
    stop = threading.Event()
    try:
        base = f"http://{front.address}"
        reply = httpx.get(f"{base}/readyz", timeout=5)
        assert reply.status_code == 503 and reply.json() == {"status": "starting"}
        threading.Thread(target=fake_runtime, args=(api, stop), daemon=True).start()
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200, 10, what="readiness")
        reply = httpx.post(f"{base}/predict", content=b'{"a": 1}', headers={"content-type": "application/json"},
                           timeout=10)
        assert reply.status_code == 201 and reply.json() == {"path": "/predict", "body": '{"a": 1}'}
    finally:
        stop.set()
        front.close()
        api.close()


def test_stopping_takes_the_whole_process_group_even_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    processes = Processes()
    pid_file = tmp_path / "grandchild.pid"
    # A leader whose own child ignores SIGTERM: only SIGKILL to the group ends it.
    script = (f"import os, signal, subprocess, sys, time; "
              f"g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              f"signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']); "
              f"open({str(pid_file)!r}, 'w').write(str(g.pid)); time.sleep(300)")
    child = processes.start("test", [sys.executable, "-c", script], env=dict(os.environ), log=tmp_path / "log")
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10, what="the grandchild")
    grandchild = int(pid_file.read_text())
    assert os.getpgid(grandchild) == child.proc.pid  # its own group, shared with what it starts
    started = time.monotonic()
    processes.stop(grace_s=1.0)
    assert time.monotonic() - started < 10
    wait_for(lambda: not group_members(child.proc.pid), 5, what="SIGKILL to reach the group")
    assert child.proc.returncode == -signal.SIGTERM


def test_a_child_that_exits_is_noticed_with_its_last_words(tmp_path: Path) -> None:
    processes = Processes()
    processes.start("the test child", [sys.executable, "-c", "import sys; print('it broke'); sys.exit(3)"],
                    env=dict(os.environ), log=tmp_path / "log")
    wait_for(lambda: processes.exited() is not None, 10, what="the child to exit")
    gone = processes.exited()
    assert gone.proc.returncode == 3 and gone.tail() == "it broke"
    processes.stop()
