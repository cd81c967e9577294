"""How mlpack runs uv (packager/mlpack/uv.py): the user's uv settings that conflict with
mlpack's own flags do not break a build, and a failure names uv's error."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.errors import MlpackError
from mlpack.uv import install_for_platform, run_uv


def test_uv_compile_bytecode_in_the_environment_does_not_break_installing_for_a_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uv refuses --no-compile beside UV_COMPILE_BYTECODE=1 ("the argument '--no-compile-bytecode'
    # cannot be used with '--compile-bytecode'"); a Lambda build then failed on it.
    monkeypatch.setenv("UV_COMPILE_BYTECODE", "1")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    install_for_platform(tmp_path / "site", python_platform="x86_64-manylinux_2_28", python_version="3.11",
                         requirements=_empty_requirements(tmp_path), find_links=wheels)
    assert not list((tmp_path / "site").rglob("*.pyc"))


def test_a_uv_failure_names_its_error_not_the_usage_text_after_it() -> None:
    with pytest.raises(MlpackError) as raised:
        run_uv(["pip", "install", "--no-such-flag"], "installing wheels")
    message = raised.value.message
    assert message.startswith("installing wheels failed: error: unexpected argument '--no-such-flag' found"), message
    assert "Usage:" not in message and "For more information" not in message


def _empty_requirements(folder: Path) -> Path:
    path = folder / "requirements.txt"
    path.write_text("")
    return path
