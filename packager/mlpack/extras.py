"""mlpack's optional extras (pyproject.toml), and the one error for a missing one.

`pip install 'mlpack[aws,edge]'` installs both. An error for a missing part names the
extra to install, never the bare package, so the fix installs the versions mlpack pins.
"""

from __future__ import annotations

import importlib.util

from .errors import MlpackError

# extra -> what it enables; README.md's install section says the same.
EXTRAS = {
    "aws": "mlpack deploy (translates SAM to CloudFormation: aws-sam-translator) and "
           "mlpack serve for Lambda artifacts (AWS's runtime interface client: awslambdaric)",
    "edge": "mlpack rollout to SSH fleets (Ansible: ansible-core)",
}


def install_hint(extra: str) -> str:
    if extra not in EXTRAS:
        raise KeyError(f"mlpack has no extra {extra!r}")
    return f"pip install 'mlpack[{extra}]'"


def missing_extra(package: str, extra: str, needed_by: str) -> MlpackError:
    return MlpackError(f"{needed_by} needs {package}, which is not installed", install_hint(extra))


def require_module(module: str, package: str, extra: str, needed_by: str) -> None:
    """Raise the missing-extra error unless `module` can be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a broken stub in sys.modules
        found = False
    if not found:
        raise missing_extra(package, extra, needed_by)
