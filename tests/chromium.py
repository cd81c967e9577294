"""Headless Chromium for page checks, through the DevTools protocol over a pipe.

`chromium --remote-debugging-pipe` reads protocol commands on fd 3 and writes replies and
events on fd 4, each a JSON message ended by a NUL byte: no websocket library needed. A
`PageVisit` opens one page and records what a user's browser would: every network request,
console messages, uncaught exceptions and the browser's own log (a blocked request, a CSP
violation), then takes a screenshot and evaluates expressions in the page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


@dataclass
class PageVisit:
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, the page's own first
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # browser log entries (level, text)
    screenshot: bytes = b""
    values: dict[str, Any] = field(default_factory=dict)  # expression -> its value in the page

    @property
    def errors(self) -> list[str]:
        return ([text for level, text in self.console if level in ("error", "assert")] + self.exceptions
                + [text for level, text in self.log if level == "error"])


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, log: Path) -> None:
        self.write_fd, self.read_fd, self.log = write_fd, read_fd, log
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(f"no reply to {method} within {timeout_s} s")

    def wait_for(self, method: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                raise RuntimeError(f"chromium closed the DevTools pipe; its log ends: {tail}")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


def visit(url: str, expressions: list[str], width: int = 1200, height: int = 1400,
          settle_s: float = 0.5) -> PageVisit:
    """Open `url` in a fresh headless Chromium profile and record what happened."""
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="mlpack-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--mute-audio",
            f"--window-size={width},{height}", "about:blank"]
    # Chromium expects its pipe ends at fd 3 (commands in) and fd 4 (messages out): a small
    # Python launcher moves them there, whatever numbers they have here, and execs it.
    launcher = (f"import os, sys; os.dup2({to_browser_r}, 3); os.dup2({from_browser_w}, 4); "
                "os.execvp(sys.argv[1], sys.argv[1:])")
    log = open(Path(profile) / "chromium.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *args],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        pass_fds=(to_browser_r, from_browser_w),
    )
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r, Path(profile) / "chromium.log")
    result = PageVisit()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.events.clear()
        pipe.send("Page.navigate", {"url": url}, session=session)
        pipe.wait_for("Page.loadEventFired")
        time.sleep(settle_s)  # late requests or errors, if the page made any
        for expression in expressions:
            reply = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                              session=session)
            result.values[expression] = reply.get("result", {}).get("value")
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
        result.screenshot = base64.b64decode(shot["data"])
        for event in pipe.events:
            params = event.get("params", {})
            method = event.get("method")
            if method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                result.console.append((params.get("type", ""), text))
            elif method == "Runtime.exceptionThrown":
                result.exceptions.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded":
                entry = params["entry"]
                result.log.append((entry.get("level", ""), entry.get("text", "")))
        try:
            pipe.send("Browser.close", timeout_s=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    return result


def save_screenshot(visit_result: PageVisit, path: Path) -> Path:
    path.write_bytes(visit_result.screenshot)
    return path
