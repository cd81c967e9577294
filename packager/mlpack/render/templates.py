"""Render the artifact's text files from Jinja templates: a pure function of its inputs.

Templates live in `templates/<group>/`; a target names the groups it needs (see
`[[render]]` in its TOML file). Rendering runs in a sandbox with StrictUndefined, and
every value a template writes goes through a filter that escapes it for the format at
hand: `yaml`, `hcl`, `json`, `sh`, `label` (Dockerfile).
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from .. import __version__
from .facts import template_facts
from ..manifest import DriftSection, ImageSection, Manifest, ProcessingSection, Requirements, Versions
from ..model.info import Signature, TensorSpec
from ..resources import data_dir
from ..targets import RenderGroup, Target

TEMPLATE_SUFFIX = ".j2"

# How a generated file of each kind says it was generated (JSON has no comments:
# JSON templates carry the notice in a field of their own).
_COMMENT_PREFIX = {
    ".py": "#", ".yaml": "#", ".yml": "#", ".tf": "#", ".toml": "#", ".sh": "#",
    ".service": "#", ".cfg": "#", ".ini": "#", ".txt": "#", "Dockerfile": "#",
    ".dockerignore": "#", ".md": None, ".json": None,
}


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


def _yaml(value: Any) -> str:
    # A JSON scalar is a valid YAML flow scalar, quoted and escaped.
    return json.dumps(value)


def _hcl(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    # HCL strings escape like JSON, plus template sequences.
    return json.dumps(str(value)).replace("${", "$${").replace("%{", "%%{")


def _label(value: Any) -> str:
    # Dockerfile LABEL/ENV values accept double-quoted strings with JSON-like escapes;
    # `$` must be escaped so that Docker does not substitute variables.
    return json.dumps(str(value)).replace("$", "\\$")


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(data_dir("templates"))),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(
        yaml=_yaml, hcl=_hcl, json=lambda v, indent=None: json.dumps(v, indent=indent),
        sh=lambda v: shlex.quote(str(v)), label=_label,
    )
    return env


def header(path: str, ctx: RenderContext) -> str:
    name = PurePosixPath(path).name
    prefix = _COMMENT_PREFIX.get(name, _COMMENT_PREFIX.get(PurePosixPath(path).suffix, "#"))
    if prefix is None:
        return ""
    return (
        f"{prefix} Generated by mlpack {ctx.mlpack_version} for {ctx.artifact}. "
        f"Do not edit by hand: rebuild with mlpack.\n"
    )


def _templates(group: str, into: str) -> list[tuple[str, str]]:
    """(template name, artifact path) for every template under templates/<group>/."""
    root = data_dir("templates") / group
    pairs = []
    for template in sorted(root.rglob(f"*{TEMPLATE_SUFFIX}")):
        relative = template.relative_to(root).as_posix()
        path = relative.removesuffix(TEMPLATE_SUFFIX)
        pairs.append((f"{group}/{relative}", f"{into}/{path}" if into else path))
    return pairs


def render_group(group: str, into: str, ctx: RenderContext) -> dict[str, str]:
    """Render every template under templates/<group>/ into artifact paths under `into`."""
    env = _environment()
    files: dict[str, str] = {}
    facts = template_facts(ctx)
    for name, path in _templates(group, into):
        text = env.get_template(name).render(ctx=ctx, target=ctx.target, model=ctx.model, image=ctx.image,
                                             facts=facts)
        files[path] = _with_header(path, text, ctx)
    return files


def _with_header(path: str, text: str, ctx: RenderContext) -> str:
    head = header(path, ctx)
    if text.startswith("#!"):  # keep a shebang first
        first, _, rest = text.partition("\n")
        return f"{first}\n{head}{rest}"
    if text.startswith("# syntax="):  # a Dockerfile parser directive must stay first
        first, _, rest = text.partition("\n")
        return f"{first}\n{head}{rest}"
    return head + text


def render_artifact(ctx: RenderContext, groups: list[RenderGroup] | None = None) -> dict[str, str]:
    """Every text file the target's artifact render groups produce (or just `groups`),
    keyed by artifact path. App entry-point groups render into app folders instead."""
    files: dict[str, str] = {}
    for group in ctx.target.artifact_groups if groups is None else groups:
        files.update(render_group(group.templates, group.into, ctx))
    return files


def render_page(template: str, **values: Any) -> str:
    """An HTML page from templates/ (the optimization report), every value HTML-escaped."""
    env = _environment()
    env.autoescape = True
    return env.get_template(template).render(**values)


def template_paths(group: RenderGroup) -> list[str]:
    """The artifact paths a render group writes, without rendering it (for the build plan)."""
    return [path for _, path in _templates(group.templates, group.into)]


def write_files(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
