"""Assemble the serving app folder (Bento build context or Lambda task root).

An app folder holds the entry point rendered from templates (`service.py` or
`handler.py`), the `mlpack_runtime` package, `runtime.json` and the model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..model.files import copy_model
from ..render.context import RenderContext
from ..render.templates import render_group, write_files
from ..resources import data_dir, runtime_dir

RUNTIME_PACKAGE = "mlpack_runtime"
# The agent's event client is standard library only; the service imports just that part,
# the agent process itself runs from the mlpack-agent distribution.
AGENT_PACKAGE = "mlpack_agent"


def runtime_json(ctx: RenderContext) -> str:
    sig = ctx.model.signature
    config = {
        "model_file": ctx.model.file,
        "inputs": [t.model_dump() for t in sig.inputs],
        "outputs": [t.model_dump() for t in sig.outputs],
        "session": ctx.target.runtime.session_settings(),
        "limits": ctx.target.serving.limits_settings(),
        "labels": {
            "model_name": ctx.name,
            "model_sha256": ctx.model.sha256,
            "model_variant": ctx.model.variant,
            "target": ctx.target.name,
            "mlpack_version": ctx.mlpack_version,
        },
    }
    if ctx.processing is not None:  # the served signature and its steps (mlpack_runtime.processing)
        config["processing"] = ctx.processing.runtime_config()
    if ctx.drift is not None:  # requests binned by the profile (mlpack_runtime.drift)
        config["drift"] = {"profile": ctx.drift.profile}
    return json.dumps(config, indent=2) + "\n"


def write_app(folder: Path, ctx: RenderContext, model: Path, artifact: Path | None = None) -> None:
    """Write a complete, runnable app folder from the target's entry-point templates.

    Layout: the entry point (service.py or handler.py), runtime.json, the model, the
    packages mlpack_runtime and mlpack_agent, the processing's files (processing/) and the
    drift profile (drift/), copied from the `artifact` folder being built.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_files(folder, render_group(ctx.target.app_group.templates, "", ctx))
    write_files(folder, {"runtime.json": runtime_json(ctx)})
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(runtime_dir(), folder / RUNTIME_PACKAGE, ignore=skip)
    shutil.copytree(data_dir("agent") / AGENT_PACKAGE, folder / AGENT_PACKAGE, ignore=skip)
    copy_model(model, folder / ctx.model.file)  # and its external data file, if it has one
    shipped = [ref.path for ref in ctx.processing.files] if ctx.processing else []
    for path in [*shipped, *([ctx.drift.profile] if ctx.drift else [])]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact / path, folder / path)
