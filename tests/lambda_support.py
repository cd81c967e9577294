"""What the Lambda tests share: the Lambda targets' Python, which the function's own
interpreter checks need."""

from __future__ import annotations

import pytest

from mlpack.awslambda.measure import find_python

requires_python312 = pytest.mark.requires_tool(
    "python3.12", present=lambda: find_python("3.12") is not None,
    hint="the Lambda targets' Python: pyenv install 3.12, or set MLPACK_LAMBDA_PYTHON",
)
