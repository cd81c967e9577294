"""What templates may know about an artifact: the RenderContext, built from its manifest.

Kept apart from the rendering (templates.py) and the facts derived from it (facts.py),
which both read it: neither imports the other for it.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from pydantic import BaseModel

from .. import __version__
from ..manifest import DriftSection, ImageSection, Manifest, ProcessingSection, Requirements, Versions
from ..model.info import Signature, TensorSpec
from ..targets import Target


class ModelFacts(BaseModel):
    """What templates may know about the shipped model."""

    file: str = "model.onnx"
    sha256: str
    source_sha256: str
    size_bytes: int
    variant: str = "float"
    signature: Signature
    # The artifact's processing (manifest `processing`): requests go through it, so the raw
    # tensor routes (batching) are not served; an image upload route is.
    processed: bool = False
    upload_input: str | None = None  # the served input an uploaded file fills (an encoded image)
    operators: list[str] = []  # the model's operator types (what a GPU image carries of cuDNN)

    @property
    def batch_input(self) -> TensorSpec | None:
        """The input BentoML may batch across requests: the model's only input, with a
        free first axis and every other axis fixed (so requests concatenate), of numbers
        (BentoML's array validators take no strings)."""
        inputs = self.signature.inputs
        if self.processed or len(inputs) != 1 or not all(o.is_tensor for o in self.signature.outputs):
            return None
        if not inputs[0].is_tensor or inputs[0].is_string:
            return None
        shape = inputs[0].shape
        if not shape or isinstance(shape[0], int) or not all(isinstance(d, int) for d in shape[1:]):
            return None
        return inputs[0]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The batch input's shape for BentoML's Shape validator: -1 for the batch axis."""
        spec = self.batch_input
        return (-1, *spec.shape[1:]) if spec and spec.shape else ()

    @property
    def batch_param(self) -> str:
        """The batch input's name as a Python identifier (BentoML API parameter)."""
        name = re.sub(r"\W", "_", self.batch_input.name if self.batch_input else "")
        return name if name.isidentifier() and not keyword.iskeyword(name) else f"input_{name}"


class RenderContext(BaseModel):
    """Everything a template may know. Built from the artifact's manifest, so `build` and
    every later command (e.g. `mlpack iac`) render from the same facts."""

    mlpack_version: str = __version__
    name: str  # the artifact's model name: a lowercase DNS label, safe in every format
    target: Target
    model: ModelFacts
    image: ImageSection
    versions: Versions  # onnxruntime, numpy, bentoml, python: pinned in the images
    requirements: Requirements  # the pinned packages, as the build resolved them
    memory_mb: int  # sized from the model (and a Lambda's measured peak): requests, Lambda memory
    processing: ProcessingSection | None = None  # runtime.json's processing, and the files app folders get
    snapstart: bool = False  # Lambda: SnapStart was asked for at build (manifest lambda.snapstart)
    drift: DriftSection | None = None  # the drift profile's manifest section: runtime.json, alert rules
    # The profile itself (mlpack.monitoring.drift): the agent's configuration lists its features. Given
    # where agent/agent.json is rendered (the build); other renders do not need it.
    drift_profile: dict[str, Any] | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest, drift_profile: dict[str, Any] | None = None) -> RenderContext:
        model = manifest.model
        processing = manifest.processing
        upload = processing.preprocess.input if processing and processing.preprocess \
            and processing.preprocess.kind == "image" else None
        return cls(
            name=manifest.name,
            target=manifest.target,
            model=ModelFacts(sha256=model.sha256, source_sha256=model.source.sha256, size_bytes=model.size_bytes,
                             variant=model.variant, signature=model.signature, processed=processing is not None,
                             upload_input=upload, operators=model.operators),
            processing=processing,
            image=manifest.image,
            versions=manifest.versions,
            requirements=manifest.requirements,
            memory_mb=manifest.memory_mb,
            snapstart=manifest.lambda_ is not None and manifest.lambda_.snapstart,
            drift=manifest.drift,
            drift_profile=drift_profile,
        )

    @property
    def artifact(self) -> str:
        return f"{self.name}-{self.target.name}"
