"""Manifests and render contexts for tests, made without building anything, and the raw
JSON edits tests use to tamper with an artifact as a user (or an attacker) could."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from mlpack.artifact import Artifact, file_entries
from mlpack.build.plan import pin_requirements
from mlpack.manifest import (
    BentoSection, ImageSection, Manifest, ModelSection, OptimizationSection, SourceModel, Versions,
)
from mlpack.model.info import Signature, TensorSpec
from mlpack.render.context import RenderContext
from mlpack.targets import load_target, target_files

from .models import linear_model

DIGITS_SIGNATURE = Signature(
    inputs=[TensorSpec(name="pixels", dtype="float32", shape=["batch", 64])],
    outputs=[
        TensorSpec(name="label", dtype="int64", shape=["batch"]),
        TensorSpec(name="probabilities", dtype="float32", shape=["batch", 10]),
    ],
)


def make_manifest(
    target_name: str,
    name: str = "model",
    *,
    signature: Signature = DIGITS_SIGNATURE,
    model_sha256: str = "a" * 64,
    source_sha256: str = "b" * 64,
    size_bytes: int = 123_456,
    variant: str = "float",
    repository: str | None = None,
    tag: str = "0.1.0-aaaaaaaaaaaa",
    memory_mb: int = 768,
    **sections: Any,
) -> Manifest:
    """A valid manifest for the installed target, with fixed facts."""
    target = load_target(target_name)
    versions = Versions(onnxruntime=target.runtime.version or "1.32.0", numpy="2.4.6", bentoml="1.4.40",
                        onnx="1.23.2", python=target.platform.python_version)
    return Manifest(
        name=name,
        target=target,
        model=ModelSection(sha256=model_sha256, size_bytes=size_bytes, variant=variant, signature=signature,
                           source=SourceModel(name="model.onnx", sha256=source_sha256, size_bytes=size_bytes,
                                              opset=17, producer="test")),
        optimization=OptimizationSection(chosen=variant, why="fixed for a test", data_source="none"),
        image=ImageSection(repository=repository or f"mlpack/{name}-{target_name}", tag=tag),
        memory_mb=memory_mb,
        requirements=pin_requirements(target, versions),
        versions=versions,
        **sections,
    )


def render_context(target_name: str, name: str = "model", *, mlpack_version: str | None = None,
                   **facts: Any) -> RenderContext:
    ctx = RenderContext.from_manifest(make_manifest(target_name, name, **facts))
    return ctx.model_copy(update={"mlpack_version": mlpack_version}) if mlpack_version else ctx


def write_artifact(root: Path, manifest: Manifest) -> Artifact:
    """Record the folder's files in the manifest and write it, as a build does last."""
    return Artifact.create(root, manifest)


def read(root: Path) -> Manifest:
    return Artifact.open(root).manifest


def edit_json(root: Path, change: Callable[[dict[str, Any]], None], *, rehash: bool = False) -> None:
    """Change manifest.json as raw JSON (what no mlpack command does); `rehash` records the
    folder's files again, as if the artifact had been built that way."""
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    if rehash:
        data["files"] = {p: e.model_dump() for p, e in file_entries(root).items()}
    path.write_text(json.dumps(data, indent=2) + "\n")


def read_history(root: Path) -> dict[str, Any]:
    """history.json as raw JSON: where the artifact was deployed and rolled out."""
    path = root / "history.json"
    return json.loads(path.read_text()) if path.exists() else {"deploys": [], "rollouts": []}


def read_json(root: Path) -> dict[str, Any]:
    """manifest.json as the JSON a user (or another tool) reads."""
    return json.loads((root / "manifest.json").read_text())


def agent_context(target_name: str, name: str = "digits") -> RenderContext:
    return render_context(
        target_name, name, model_sha256="c" * 64, source_sha256="d" * 64, size_bytes=200_000, memory_mb=512,
        signature=Signature(inputs=[TensorSpec(name="pixels", dtype="float32", shape=["batch", 64])],
                            outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"])]),
        tag="0.1.0-cccccccccccc",
    )


def fixed_context(target_name: str) -> RenderContext:
    return render_context(
        target_name, "golden-model", mlpack_version="0.0.0-golden", variant="dynamic-int8",
        repository="registry.example.com/ml/golden-model", tag="0.0.0-aaaaaaaaaaaa",
    )


# The targets whose artifacts carry Kubernetes files (the golden delivery files, objectives).
KUBERNETES_TARGETS = [t for t in sorted(target_files()) if fixed_context(t).target.renders_kubernetes]


def delivery_context(target_name: str, autoscaler: str, delivery: str) -> RenderContext:
    """The golden model's context with `mlpack build --autoscaler/--delivery` chosen."""
    ctx = fixed_context(target_name)
    return ctx.model_copy(update={"target": ctx.target.with_kubernetes(autoscaler=autoscaler, delivery=delivery)})


def sensor_artifact(tmp_path: Path, bento: bool = True) -> Path:
    """A small arm-edge artifact ("sensor", a linear model, written without building) to roll out."""
    root = tmp_path / "sensor-arm-edge"
    (root / "model").mkdir(parents=True)
    linear_model(root / "model" / "model.onnx")
    signature = Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 4])],
                          outputs=[TensorSpec(name="y", dtype="float32", shape=[None, 2])])
    manifest = make_manifest("arm-edge", "sensor", signature=signature, tag="0.1.0-0123456789ab",
                             bento=BentoSection(tag="sensor-arm-edge:0.1.0-0123456789ab") if bento else None)
    write_artifact(root, manifest)
    return root
