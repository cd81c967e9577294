"""Requests that cannot hurt the service: the limits as target data, as build options, in
runtime.json, and as mlpack_runtime enforces them on arrays (the ASGI guard in front of
them: tests/test_request_guard.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpack.steps.app import runtime_json
from mlpack.build import BuildRequest, build
from mlpack.cli import app as cli
from mlpack.errors import InputError
from mlpack.progress import Progress
from mlpack.runtime import RequestError, limits
from mlpack.runtime.limits import RequestLimits
from mlpack.targets import known_targets, load_target
from mlpack.render.context import RenderContext

from .manifests import make_manifest

SPECS = [{"name": "x", "dtype": "float32", "shape": ["batch", 2]},
         {"name": "ids", "dtype": "int64", "shape": [1, 3]}]


def test_every_target_has_limits_and_lambda_stays_under_the_function_url_payload() -> None:
    for target in known_targets():
        settings = target.serving.limits_settings()
        assert 0 < settings["max_request_bytes"] <= 64 * 2**20 and settings["max_rows"] >= 1
        assert settings["allow_non_finite"] is False
    assert load_target("aws-lambda").serving.limits_settings()["max_request_bytes"] == 6 * 2**20


def test_build_options_change_the_limits_the_manifest_and_runtime_json_carry() -> None:
    target = load_target("x86-cpu").with_serving(max_request_mb=0.5, max_rows=16, allow_non_finite=True)
    manifest = make_manifest("x86-cpu").model_copy(update={"target": target})
    assert manifest.target.serving.max_rows == 16
    carried = json.loads(runtime_json(RenderContext.from_manifest(manifest)))["limits"]
    assert carried == {"max_request_bytes": 2**19, "max_rows": 16, "allow_non_finite": True, "max_concurrency": 8}
    assert RequestLimits.from_json(carried) == RequestLimits(2**19, 16, True, 8)
    assert load_target("x86-cpu").with_serving(max_rows=None) == load_target("x86-cpu")


def test_an_out_of_range_limit_fails_the_build_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--max-request-mb: Input should be greater than 0$"):
        build(BuildRequest(target="x86-cpu", out=tmp_path, max_request_mb=0), Progress(quiet=True))
    assert list(tmp_path.iterdir()) == []
    reply = CliRunner().invoke(cli, ["build", "--target", "x86-cpu", "--out", str(tmp_path), "--max-rows", "0"])
    assert reply.exit_code != 0
    assert "--max-rows: Input should be greater than or equal to 1" in reply.output


def test_the_options_the_runtime_names_are_build_options() -> None:
    usage = re.sub(r"\s+", " ", CliRunner().invoke(cli, ["build", "--help"], terminal_width=200).output)
    for option in (limits.REQUEST_SIZE_OPTION, limits.ROWS_OPTION, limits.NON_FINITE_OPTION):
        assert option in usage


def test_rows_over_the_limit_are_refused_on_a_free_first_axis_only() -> None:
    checks = RequestLimits(max_rows=2)
    checks.check_arrays({"x": np.zeros((2, 2), np.float32), "ids": np.zeros((1, 3), np.int64)}, SPECS)
    with pytest.raises(RequestError, match=r"^input 'x' has 3 rows, over this service's limit of 2 rows"):
        checks.check_arrays({"x": np.zeros((3, 2), np.float32)}, SPECS)


def test_non_finite_floats_are_refused_where_they_are_unless_allowed() -> None:
    x = np.array([[0.0, 1.0], [-np.inf, 2.0]], np.float32)
    with pytest.raises(RequestError, match=r"^input 'x' holds -inf at \[1, 0\]: send finite numbers"):
        RequestLimits().check_arrays({"x": x}, SPECS)
    RequestLimits(allow_non_finite=True).check_arrays({"x": x}, SPECS)
