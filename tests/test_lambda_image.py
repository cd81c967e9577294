"""The Lambda function image gets the zip's treatment: the same pruning, bytecode compiled
by the image's own Python, and its entry point answering under the local Runtime API with
its cold start measured as the zip's is (awslambda.measure.run_once).

Built with buildah on a stand-in for public.ecr.aws/lambda/python:3.12 (tests/standin.py:
Python 3.12 in /var/lang, awslambdaric in /var/runtime, /lambda-entrypoint.sh).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.awslambda.measure import find_python, run_once

from .image_support import buildah, requires_image_tools
from .manifests import read_json
from .standin import ensure_lambda_standin
from .demo_data import demo_rows
from .lambda_support import requires_python312
from .pyramid import heavy

pytestmark = [pytest.mark.slow, requires_image_tools, requires_python312]


@pytest.fixture(scope="module")
@heavy
def image_root(demo_artifact, tmp_path_factory):
    """The demo's Lambda image, built on the stand-in, mounted: its root file system."""
    built = demo_artifact("aws-lambda")
    artifact = shutil.copytree(built.path, tmp_path_factory.mktemp("lambda-image") / built.path.name)
    base = ensure_lambda_standin(find_python("3.12").path)
    result = CliRunner().invoke(app, ["image", str(artifact), "--builder", "buildah", "--base-image", base, "-q"])
    assert result.exit_code == 0, result.output
    image = read_json(artifact)["image"]["id"]
    container = buildah("from", "--pull=never", image).stdout.strip()
    try:
        yield Path(buildah("mount", container).stdout.strip()), built
    finally:
        buildah("umount", container, check=False)
        buildah("rm", container, check=False)
        buildah("rmi", "-f", image, check=False)


def test_the_image_ships_bytecode_and_none_of_what_the_zip_leaves_out(image_root) -> None:
    root, _ = image_root
    task = root / "var" / "task"
    for module in ("handler", "mlpack_runtime/served", "numpy/__init__", "onnxruntime/__init__"):
        source = task / f"{module}.py"
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        assert pyc.is_file(), module
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01  # unchecked-hash
        assert b"/var/task/" in pyc.read_bytes()
    assert not list(task.glob("onnxruntime/capi/libonnxruntime.so*"))
    assert not (task / "numpy" / "_core" / "include").exists() and not list(task.rglob("*.pyi"))
    assert (root / "opt" / "mlpack-agent" / "mlpack_agent" / "__pycache__").is_dir()


def test_the_images_entry_point_answers_and_its_cold_start_is_measured(image_root) -> None:
    root, _ = image_root
    pixels, labels = demo_rows(3)
    run, _ = run_once(find_python("3.12"), Path("/var/task"), Path("/var/runtime"),
                      {"inputs": {"pixels": pixels.tolist()}}, cwd=root,
                      command=["chroot", str(root), "/lambda-entrypoint.sh", "handler.handler"])
    assert run.reply["outputs"]["label"] == labels.tolist()
    assert 0 < run.init_s < run.total_s < 30 and run.peak_rss_mb > 20
