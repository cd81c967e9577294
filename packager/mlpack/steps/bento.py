"""The `bento` step (runs BentoML): the Bento, built offline in a private BentoML home.

BentoML reads BENTOML_HOME when it is imported, so the build runs in a child process
(`python -m mlpack.steps.bento SPEC.json`): the user's own bento store is never touched,
and the finished Bento folder is copied into the artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .app import write_app
from ..errors import MlpackError
from ..fsutil import scratch_folder
from ..manifest import BentoSection, Manifest
from ..render.context import RenderContext
from ..trust.reproducible import epoch_of, timestamp
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
            source, name=m.artifact, version=m.image.tag, packages=[*m.requirements.runtime, *m.requirements.cuda, *m.requirements.processing],
            python_version=m.target.platform.python_version,
            labels={"mlpack.target": m.target.name, "mlpack.model_sha256": m.model.sha256},
            dest=ctx.root / "bento", epoch=epoch_of(m),
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
    epoch: int | None = None,
) -> str:
    """Build `context_dir/service.py` into a Bento and copy it to `dest`. Returns its tag.

    With `epoch`, bento.yaml's creation_time is that time instead of the clock's (the one
    thing in a Bento that differs between two builds of the same inputs)."""
    spec = {
        "context": str(context_dir),
        "name": name,
        "version": version,
        "packages": packages,
        "python_version": python_version,
        "labels": labels,
    }
    # The child holds the home's lock too: killed, this process leaves a child that goes on
    # in it, and the next build's sweep waits for that child to end (fsutil.sweep).
    with scratch_folder("bentoml-home") as scratch:
        home = scratch.path
        env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        spec_file = home / "spec.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.run(
            [sys.executable, "-m", "mlpack.steps.bento", str(spec_file)],
            env=env, capture_output=True, text=True, cwd=context_dir, pass_fds=(scratch.fd,),
        )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MlpackError(f"bentoml build failed: {detail}", "rerun with --debug for the full log")
        built = home / "bentos" / name / version
        shutil.copytree(built, dest)
    if epoch is not None:
        set_creation_time(dest / "bento.yaml", epoch)
    return f"{name}:{version}"


_CREATION_TIME = re.compile(r"^creation_time: .*$", re.MULTILINE)


def set_creation_time(bento_yaml: Path, epoch: int) -> None:
    """Rewrite the top-level creation_time line of a bento.yaml, keeping BentoML's formatting."""
    text = bento_yaml.read_text(encoding="utf-8")
    if len(_CREATION_TIME.findall(text)) != 1:
        raise MlpackError(f"{bento_yaml.name} has no single creation_time line to make reproducible",
                          "this BentoML writes bento.yaml differently: report it with `pip show bentoml`")
    stamp = timestamp(epoch).isoformat()
    bento_yaml.write_text(_CREATION_TIME.sub(f"creation_time: '{stamp}'", text), encoding="utf-8")


def _build_in_this_process(spec: dict) -> None:
    import bentoml

    bentoml.bentos.build(
        "service:MlpackService",
        name=spec["name"],
        version=spec["version"],
        labels=spec["labels"],
        build_ctx=spec["context"],
        include=["*.py", "*.json", "*.onnx", "*.onnx.data", "mlpack_runtime/*.py", "mlpack_runtime/processing/*.py",
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
