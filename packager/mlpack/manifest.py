"""manifest.json: what an artifact is and holds, as a typed, versioned schema.

The manifest is the one contract between `mlpack build` and every command after it. It
records the *resolved target* the build used (the whole `Target`, not its name), so an
artifact means the same thing after the installed `targets/` files change: nothing after
`build` reads a target file. This module is pure (no I/O); `artifact.py` reads and
writes manifests.

Schema versions: `SCHEMA_VERSION` rises whenever a manifest written by a released mlpack
could not be read by a later one, or the other way round.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import __version__
from .model.info import Signature, TensorSpec
from .paths import ArtifactPath
from .processing.schema import ProcessingSection
from .targets import Target

MANIFEST = "manifest.json"
SIGNATURE = "signature.sig"  # written by `mlpack sign` over every other file but HISTORY
# Where the artifact was deployed and rolled out: records that no command acts on, so
# they stay outside the signature (deploy and rollout write them to signed artifacts).
HISTORY = "history.json"
# `mlpack image` writes the image's SBOM beside the manifest after build; the manifest
# records its sha256 (image.sbom_sha256), and a signature made after it covers it.
IMAGE_SBOM = "image.cdx.json"
# The build's measurements (timings differ run to run): covered by the signature, but not
# hashed into `files`, so that the same inputs give the same manifest.
REPORT_FILES = ("report.md", "report.json", "report.html")
SCHEMA_VERSION = 1  # the first versioned schema: manifests before it had no schema_version
HISTORY_KEPT = 20  # deploys and rollouts remembered per artifact

# The artifact's model name is written unquoted in comments, unit files and paths: it
# must stay a DNS label.
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
NAME_RULE = "1 to 40 lowercase letters, digits and '-', starting and ending with a letter or digit"

# The OCI distribution reference grammar, simplified: [host[:port]/]path, tag, digest.
# Image references reach shell scripts and unit files as well as YAML and HCL: besides
# being escaped there, anything that is not an image reference is refused here.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class Section(BaseModel):
    """A part of the manifest: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class FileEntry(Section):
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0)


class SourceModel(Section):
    """The model as the user gave it."""

    name: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size_bytes: int = Field(ge=0)
    opset: int
    producer: str


class ModelSection(Section):
    """The model the artifact ships, and the signature it serves."""

    file: ArtifactPath = Field("model/model.onnx", description="path in the artifact")
    sha256: str = Field(pattern=SHA256_PATTERN)
    size_bytes: int = Field(ge=0)
    variant: str = Field(description="the optimizer's variant that ships (report.md says why)")
    source: SourceModel
    signature: Signature
    ir_version: int | None = Field(None, description="the shipped model's ONNX IR version")
    operators: list[str] = Field(default_factory=list, description="the model's operator types: what a GPU "
                                 "image carries of cuDNN follows from them (mlpack.image.cuda)")
    rewrites: list[str] = Field(default_factory=list, description="what the build changed in the model so that "
                                "the onnxruntime the artifact pins reads it (e.g. a lower IR version)")


class OptimizationSection(Section):
    chosen: str
    why: str
    data_source: str = Field(description="where the accuracy gate measured (real or synthetic data)")
    gated_with: str | None = Field(None, description="the onnxruntime release and execution provider the gate "
                                   "ran on: the release the artifact pins")


class ImageIndex(Section):
    """The multi-arch index `mlpack push` made for artifacts of one model."""

    tag: str = Field(pattern=TAG_PATTERN)
    digest: str = Field(pattern=DIGEST_PATTERN)
    ref: str
    platforms: list[str]


class ImageSection(Section):
    """The artifact's container image: named at build, built by `mlpack image`, pinned by `mlpack push`."""

    repository: str = Field(pattern=REPOSITORY_PATTERN)
    tag: str = Field(pattern=TAG_PATTERN)
    digest: str | None = Field(None, pattern=DIGEST_PATTERN, description="set by `mlpack push`")
    local: str | None = Field(None, description="local name:tag of the built image")
    id: str | None = Field(None, pattern=DIGEST_PATTERN, description="config digest of the built image")
    platform: str | None = None
    base: str | None = Field(None, description="the base image it was built on")
    ref: str | None = Field(None, description="registry/repository@digest, set by `mlpack push`")
    sbom_sha256: str | None = Field(None, pattern=SHA256_PATTERN, description="of image.cdx.json, the image's "
                                    "SBOM `mlpack image` wrote (and the image holds); `mlpack push` attaches it")
    sbom_ref: str | None = Field(None, description="registry/repository@digest of the SBOM `mlpack push` attached")
    index: ImageIndex | None = None

    @property
    def local_ref(self) -> str:
        """The local name:tag (the repository points at a registry once pushed)."""
        return self.local or f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """The reference deployments use: by digest when known, else by tag."""
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


class BentoSection(Section):
    tag: str
    path: ArtifactPath = "bento"


class ImportCost(Section):
    """One package's share of a cold start's imports (`python -X importtime`)."""

    package: str
    seconds: float = Field(description="its modules' own import time, summed")
    modules: int


class ColdStart(Section):
    """A Lambda cold start as measured at build, on the shipped zip: fresh processes
    under awslambdaric and a local Runtime API, from exec to the first answer."""

    seconds: float | None = Field(description="median of init + first invoke")
    peak_rss_mb: float | None = Field(description="the highest peak RSS of the measured processes")
    runs: int
    python: str | None
    note: str
    p90_seconds: float | None = None
    init_seconds: float | None = Field(None, description="median: process start to the runtime's first request")
    invoke_seconds: float | None = Field(None, description="median: the first event handed out to its answer")
    emulated: bool = Field(False, description="measured under qemu, not on the target's CPU")
    imports: list[ImportCost] = Field(default_factory=list, description="the most expensive imports, costliest first")


class PrunedFiles(Section):
    """Files left out of the Lambda package, by kind (`awslambda/prune.py` says why)."""

    kind: str
    files: int
    bytes: int


class LambdaSection(Section):
    zip: ArtifactPath = "lambda/function.zip"
    # A measurement: the build records it in report.json and leaves None here, so that the
    # same inputs give the same manifest (mlpack.trust.reproducible).
    cold_start: ColdStart | None = None
    unzipped_bytes: int | None = None
    bytecode: str | None = Field(None, description="the .pyc files' cache tag and invalidation mode; None: none")
    pruned: list[PrunedFiles] = Field(default_factory=list)
    snapstart: bool = Field(False, description="the IaC turns on SnapStart (published versions, an alias)")


class SbomSection(Section):
    """The artifact's software bill of materials (CycloneDX 1.6 JSON, mlpack.trust.sbom)."""

    path: ArtifactPath = "sbom.cdx.json"


class DriftSection(Section):
    """The drift profile (mlpack.monitoring.drift): what the served model bins requests by and the agent
    compares them with. Absent when the build had no real calibration data."""

    profile: ArtifactPath = Field("drift/profile.json", description="path in the artifact (and in every app folder)")
    id: str = Field(pattern=r"^[0-9a-f]{16}$", description="the profile's id: the agent refuses counts of another")
    rows: int = Field(gt=0, description="calibration rows it was made from")
    data_source: str
    input_features: int = Field(ge=0)
    output_features: int = Field(ge=0)


class Requirements(Section):
    """The Python packages that ship, pinned once at build (images, Bento, Lambda zip)."""

    runtime: list[str] = Field(description="what the model's session needs (onnxruntime, numpy): the Lambda "
                               "zip's and the Bento's packages (BentoML adds itself to a Bento)")
    server: list[str] = Field(description="the server image's packages: runtime, cuda, processing and bentoml")
    cuda: list[str] = Field(default_factory=list, description="GPU targets: NVIDIA's CUDA wheels the runtime links "
                            "(mlpack.image.cuda): in the Bento and the server image, never in a Lambda zip")
    processing: list[str] = Field(default_factory=list, description="what the artifact's processing imports "
                                  "(tokenizers, pillow): in the server list too; the Lambda zip installs them "
                                  "without their dependencies")


class Versions(Section):
    """The versions the model was measured with; what ships pins the same ones."""

    onnxruntime: str
    numpy: str
    bentoml: str
    onnx: str
    python: str = Field(description="the target's Python")
    build_python: str | None = Field(None, description="the Python that ran the build")


class BuildInputs(Section):
    """What decided the build (mlpack.trust.reproducible): the same inputs give the same bytes."""

    digest: str = Field(pattern=SHA256_PATTERN, description="sha256 of the canonical JSON of the other fields")
    source_model_sha256: str = Field(pattern=SHA256_PATTERN)
    calibration_sha256: str | None = Field(None, description="the --calibration file, or the demo's own data")
    target_sha256: str = Field(pattern=SHA256_PATTERN, description="of the resolved target, as canonical JSON")
    mlpack_version: str
    versions: dict[str, str | None] = Field(description="the versions measured with and pinned")
    options: dict[str, Any] = Field(description="the build options that change what is written")
    source_date_epoch: int = Field(ge=0, description="the one time written into the artifact ($SOURCE_DATE_EPOCH, "
                                   "else derived from the digest)")


class DeployRecord(Section):
    at: datetime
    stack: str
    stack_id: str | None
    region: str
    code: str
    function_arn: str | None
    url: str | None


class RolloutRecord(Section):
    at: datetime
    engine: Literal["ansible", "greengrass"]
    fleet: str
    version: str
    outcome: str


class Manifest(Section):
    """Everything a command after `build` needs to know about an artifact."""

    schema_version: Literal[1] = SCHEMA_VERSION
    mlpack_version: str = __version__
    name: str = Field(description="the model's name; the artifact is <name>-<target>")
    target: Target = Field(description="the target as resolved at build time")
    model: ModelSection
    optimization: OptimizationSection
    image: ImageSection
    memory_mb: int = Field(gt=0, description="memory to ask for: Kubernetes requests, Lambda memory size")
    requirements: Requirements
    bento: BentoSection | None = None
    lambda_: LambdaSection | None = Field(None, alias="lambda")
    processing: ProcessingSection | None = Field(None, description="pre- and post-processing around the model")
    drift: DriftSection | None = Field(None, description="the drift profile, made from the calibration data")
    sbom: SbomSection | None = None
    versions: Versions
    build: BuildInputs | None = Field(None, description="the inputs that decided the build")
    files: dict[ArtifactPath, FileEntry] = Field(default_factory=dict, description="every other file: sha256 and size")

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{name!r} is not {NAME_RULE}")
        return name

    @property
    def artifact(self) -> str:
        return f"{self.name}-{self.target.name}"

    @property
    def platform(self) -> str:
        return self.target.platform.oci

    @property
    def served_signature(self) -> Signature:
        """What the service takes and answers: after processing, if the artifact has any."""
        return self.processing.signature if self.processing else self.model.signature

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True) + "\n"


class History(Section):
    """history.json: where an artifact went, newest last. Records only: no command reads
    them to decide anything, so they are not signed (docs/security.md)."""

    deploys: list[DeployRecord] = Field(default_factory=list)
    rollouts: list[RolloutRecord] = Field(default_factory=list)

    def record_deploy(self, record: DeployRecord) -> None:
        self.deploys = [*self.deploys, record][-HISTORY_KEPT:]

    def record_rollout(self, record: RolloutRecord) -> None:
        self.rollouts = [*self.rollouts, record][-HISTORY_KEPT:]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


__all__ = [
    "HISTORY", "IMAGE_SBOM", "MANIFEST", "REPORT_FILES", "SCHEMA_VERSION", "SIGNATURE", "NAME_PATTERN", "NAME_RULE",
    "BentoSection", "BuildInputs", "ColdStart", "DeployRecord", "DriftSection", "FileEntry", "History", "ImageIndex", "ImageSection",
    "ImportCost", "LambdaSection", "Manifest", "ModelSection", "OptimizationSection", "ProcessingSection",
    "PrunedFiles", "Requirements", "RolloutRecord", "SbomSection", "Signature", "SourceModel", "TensorSpec",
    "Versions",
]
