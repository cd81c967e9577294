"""docs/serving.md's requests, run as typed against a served artifact.

The section "Every route, with a request to send" shows one or more `curl` lines per
route for the demo (`digits-demo`, on 127.0.0.1:3000); lines that prepare a file (an .npz)
come before the request that sends it. `run_documented` runs each line with bash in a
folder, the URL's host and port replaced by the server's, and hands curl's output to the
route's check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from .conftest import REPO

SERVING_DOC = REPO / "docs" / "serving.md"
SECTION = "## Every route, with a request to send"
DOC_URL = "http://127.0.0.1:3000"
DEMO = "digits-demo"

requires_curl = pytest.mark.requires_tool("curl", hint="apt-get install curl (bash .ci/setup.sh tests)")


def documented_lines() -> list[tuple[str, str]]:
    """(route, line) for every console line of the section, in order; route "" for a line
    that sends nothing (it prepares a file)."""
    text = SERVING_DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    lines = [line.strip() for block in re.findall(r"```console\n(.*?)```", section, re.S)
             for line in block.splitlines() if line.strip()]
    return [(found.group(1) if (found := re.search(re.escape(DOC_URL) + r"(/[^\s']*)", line)) else "", line)
            for line in lines]


def documented_row() -> list[float]:
    """The demo row the section's /predict request sends."""
    line = next(line for route, line in documented_lines() if route == "/predict" and '"pixels"' in line)
    return json.loads(re.search(r"-d '(.*)'$", line).group(1))["inputs"]["pixels"][0]


def run_documented(lines: list[tuple[str, str]], base: str, folder: Path,
                   checks: dict[str, Callable[[str], Any]]) -> list[str]:
    """Run the lines in `folder` against `base` (http://host:port); each request's output
    goes to its route's check. Returns the routes requested."""
    assert shutil.which("curl"), "curl is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    sent = []
    for route, line in lines:
        done = subprocess.run(["bash", "-c", line.replace(DOC_URL, base)], cwd=folder, capture_output=True,
                              text=True, timeout=120, env={**os.environ})
        assert done.returncode == 0, f"{line[:120]!r} failed: {done.stderr[-1000:]}"
        if route:
            try:
                checks[route](done.stdout)
            except Exception as exc:
                raise AssertionError(f"{route}: {line[:100]}... answered {done.stdout[:500]!r}") from exc
            sent.append(route)
    return sent


def expect(condition: bool) -> None:
    """An assert usable in a route's check (a lambda)."""
    assert condition


def outputs(text: str) -> dict:
    return json.loads(text)["outputs"]


def demo_checks(label: int) -> dict[str, Callable[[str], Any]]:
    """What each route answers for the demo, sent the documented row (whose class is `label`)."""
    return {
        "/predict": lambda text: expect(outputs(text)["label"] == [label]),
        "/predict_batch": lambda text: expect([row["label"] for row in json.loads(text)] == [label]),
        "/predict_npz": lambda text: expect(len(outputs(text)["label"]) == 2),
        "/readyz": lambda text: expect(text == "200\n"),
        "/livez": lambda text: expect(text == "200\n"),
        "/v2": lambda text: expect("binary_tensor_data" in json.loads(text)["extensions"]),
        "/v2/health/live": lambda text: expect(json.loads(text) == {"live": True}),
        "/v2/health/ready": lambda text: expect(json.loads(text) == {"ready": True}),
        f"/v2/models/{DEMO}": lambda text: expect([i["name"] for i in json.loads(text)["inputs"]] == ["pixels"]),
        f"/v2/models/{DEMO}/ready": lambda text: expect(json.loads(text)["ready"] is True),
        f"/v2/models/{DEMO}/infer": lambda text: expect(
            next(o for o in json.loads(text)["outputs"] if o["name"] == "label")["data"] == [label]),
    }
