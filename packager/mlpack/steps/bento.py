"""The `bento` step (runs BentoML): the Bento, built offline in a private BentoML home.

BentoML reads BENTOML_HOME when it is imported, so the build runs in a child process
(`python -m mlpack.steps.bento SPEC.json`): the user's own bento store is never touched,
and the finished Bento folder is copied into the artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..app import write_app
from ..errors import MlpackError
from ..manifest import BentoSection, Manifest
from ..render import RenderContext
from . import StepContext


class BentoStep:
    name = "bento"
    section = "bento"
    writes = ("bento/",)

    def describe(self, manifest: Manifest) -> str:
        return "Building the Bento (BentoML, offline)"

    def run(self, ctx: StepContext) -> BentoSection:
        m = ctx.manifest
        source = ctx.work / "bento-src"
        write_app(source, RenderContext.from_manifest(m), ctx.model, ctx.root)
        tag = build_bento(
            source, name=m.artifact, version=m.image.tag, packages=[*m.requirements.runtime, *m.requirements.processing],
            python_version=m.target.platform.python_version,
            labels={"mlpack.target": m.target.name, "mlpack.model_sha256": m.model.sha256},
            dest=ctx.root / "bento",
        )
        return BentoSection(tag=tag, path="bento")


def build_bento(
    context_dir: Path,
    *,
    name: str,
    version: str,
    packages: list[str],
    python_version: str,
    labels: dict[str, str],
    dest: Path,
) -> str:
    """Build `context_dir/service.py` into a Bento and copy it to `dest`. Returns its tag."""
    spec = {
        "context": str(context_dir),
        "name": name,
        "version": version,
        "packages": packages,
        "python_version": python_version,
        "labels": labels,
    }
    with tempfile.TemporaryDirectory(prefix="mlpack-bentoml-home-") as home:
        env = {**os.environ, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "true"}
        spec_file = Path(home) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", "mlpack.steps.bento", str(spec_file)],
            env=env, capture_output=True, text=True, cwd=context_dir,
        )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MlpackError(f"bentoml build failed: {detail}", "rerun with --debug for the full log")
        built = Path(home) / "bentos" / name / version
        shutil.copytree(built, dest)
    return f"{name}:{version}"


def _build_in_this_process(spec: dict) -> None:
    import bentoml

    bentoml.bentos.build(
        "service:MlpackService",
        name=spec["name"],
        version=spec["version"],
        labels=spec["labels"],
        build_ctx=spec["context"],
        include=["*.py", "*.json", "*.onnx", "mlpack_runtime/*.py", "mlpack_runtime/processing/*.py",
                 "mlpack_agent/*.py", "processing/*"],
        python={
            "packages": spec["packages"],
            # Locking resolves against an index; builds must work offline.
            "lock_packages": False,
        },
        docker={"python_version": spec["python_version"], "distro": "debian"},
    )


if __name__ == "__main__":
    _build_in_this_process(json.loads(Path(sys.argv[1]).read_text()))
