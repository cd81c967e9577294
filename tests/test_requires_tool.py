"""The requires_tool marker (tests/conftest.py): a missing tool skips with its install hint,
and fails with CI=true; a tool that is there runs the test, in CI or not."""

from __future__ import annotations

import sys

import pytest

GENERATED = f'''
import pytest

@pytest.mark.requires_tool("no-such-tool-mlpack", hint="apt-get install no-such-tool")
def test_program():
    pass

@pytest.mark.requires_tool("no_such_module_mlpack.sub", module=True, hint="pip install no-such-module")
def test_module():
    pass

@pytest.mark.requires_tool("/nonexistent/mlpack/bin/tool", hint="bash .ci/make-tool.sh")
def test_path():
    pass

@pytest.mark.requires_tool("binfmt", present=lambda: False, hint="mount binfmt_misc")
def test_present():
    pass

@pytest.mark.requires_tool("sh", {sys.executable!r}, hint="always there")
@pytest.mark.requires_tool("json", module=True, hint="the standard library")
def test_there():
    pass
'''
HINTS = ("apt-get install no-such-tool", "pip install no-such-module", "bash .ci/make-tool.sh", "mount binfmt_misc")


@pytest.fixture
def generated(pytester: pytest.Pytester) -> pytest.Pytester:
    # The marker's hook from this suite's conftest, in a run of its own on a generated file.
    pytester.makeconftest("from tests.conftest import pytest_runtest_setup  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    requires_tool: see tests/conftest.py\n")
    pytester.makepyfile(test_generated=GENERATED)
    return pytester


def test_a_missing_tool_skips_with_its_hint_outside_ci(generated: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = generated.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=4)
    for hint in HINTS:
        result.stdout.fnmatch_lines([f"SKIPPED*which is not installed: {hint}"])


def test_a_missing_tool_fails_with_its_hint_in_ci(generated: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = generated.runpytest("-rE")
    result.assert_outcomes(passed=1, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for hint in HINTS:
        result.stdout.fnmatch_lines([f"ERROR*which is not installed: {hint} (CI=true: .ci/run must install*"])


def test_a_marker_without_a_hint_is_an_error(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest("from tests.conftest import pytest_runtest_setup  # noqa: F401\n")
    pytester.makepyfile("import pytest\n\n@pytest.mark.requires_tool('sh')\ndef test_x():\n    pass\n")
    pytester.runpytest("-p", "no:warnings").assert_outcomes(errors=1)
