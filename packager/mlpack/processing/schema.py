"""The manifest's `processing` section: what runs around the model, and what is served.

PURE (pydantic only). `manifest.py` holds it as `Manifest.processing`; runtime.json gets
`ProcessingSection.runtime_config()`, which `mlpack_runtime.processing` reads at serving.
Every file a step needs ships in the artifact under `processing/` (and in every app
folder at the same path), recorded with its sha256.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..model.info import Signature
from ..paths import ArtifactPath

PROCESSING_DIR = "processing"  # in the artifact and in every app folder
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FileRef(_Section):
    """A file the processing ships: its path in the artifact (and in the app folders)."""

    path: ArtifactPath = Field(pattern=rf"^{PROCESSING_DIR}/[^/]+$")
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int = Field(ge=0)


class TextPreprocess(_Section):
    """A Hugging Face tokenizer fills the model's token inputs from the served `text`."""

    kind: Literal["text"] = "text"
    input: str = Field("text", description="the served input: one string per row")
    tokenizer: FileRef
    found: str = Field(description="how the build found the tokenizer")
    feeds: dict[str, Literal["ids", "mask", "type_ids", "positions"]] = Field(
        description="model input -> what the tokenizer fills it with")
    max_length: int = Field(ge=1, description="tokens per row at most (longer rows are truncated)")
    max_length_from: str = Field(description="where the limit comes from")
    padding: Literal["longest", "fixed"] = Field(
        description="longest: rows padded to the request's longest; fixed: to max_length (the model fixes it)")
    direction: Literal["right", "left"] = "right"
    pad_id: int
    pad_type_id: int = 0
    pad_token: str
    length_groups: int | None = Field(
        None, ge=2, description="a request of more rows runs as groups of this many rows of similar length, "
        "each padded to its own longest row, so short rows do not pay for the longest; set where the "
        "outputs have no sequence axis and the build saw grouped outputs equal one batch's on the source "
        "model; None: every request runs as one batch")


class ImageSpec(_Section):
    """How an encoded image becomes the model's input (`--image-preprocess spec.toml`).

    As written in the file every key is optional; the build fills in what the model
    fixes (size, layout, dtype), and the manifest records the spec it resolved."""

    size: list[int] | None = Field(None, min_length=2, max_length=2,
                                   description="[height, width] the model takes; default: the model's fixed size")
    resize: int | None = Field(None, ge=1, description="scale the shorter side to this, then crop the centre to "
                                                       "size; without it, the image is scaled straight to size")
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    channels: Literal["RGB", "BGR", "L"] = Field("RGB", description="L: one grey channel")
    scale: float = Field(255.0, gt=0, description="pixel values (0..255) are divided by this first")
    mean: list[float] | None = Field(None, description="subtracted per channel, after scale; default 0")
    std: list[float] | None = Field(None, description="divided by per channel, after mean; default 1")
    layout: Literal["NCHW", "NHWC"] | None = Field(None, description="default: what the model's input shape shows")
    dtype: Literal["float32", "float16", "uint8"] | None = Field(
        None, description="default: the model input's; uint8 feeds the 0..255 pixels as they are")

    @model_validator(mode="after")
    def _consistent(self) -> ImageSpec:
        problems = []
        if self.size is not None and min(self.size) < 1:
            problems.append("size: height and width must be at least 1")
        if self.resize is not None and self.size is not None and self.resize < max(self.size):
            problems.append(f"resize: {self.resize} is smaller than size {self.size}, so the centre crop "
                            "would not fit; use at least the larger of the two")
        count = 1 if self.channels == "L" else 3
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != count:
                problems.append(f"{key}: {len(values)} values for {count} channel(s) ({self.channels})")
        if self.std is not None and any(v <= 0 for v in self.std):
            problems.append("std: every value must be greater than 0")
        if self.dtype == "uint8" and (self.mean or self.std or self.scale != 255.0):
            problems.append("dtype: uint8 feeds the pixels as they are: drop scale, mean and std")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def channel_count(self) -> int:
        return 1 if self.channels == "L" else 3


class ImagePreprocess(_Section):
    """Encoded PNG/JPEG images in the served `image` input become the model's pixel tensor."""

    kind: Literal["image"] = "image"
    input: str = Field("image", description="the served input: one encoded image (bytes or base64) per row")
    feed: str = Field(description="the model input it fills")
    spec: ImageSpec


class HookProcessing(_Section):
    """The user's module with `preprocess` and/or `postprocess` (`--processing my_module.py`)."""

    kind: Literal["hook"] = "hook"
    module: FileRef
    functions: list[Literal["preprocess", "postprocess"]] = Field(min_length=1)
    inputs_from: str | None = Field(None, description="with preprocess: where the served inputs come from")
    outputs_from: str | None = Field(None, description="with postprocess: where the served outputs come from")


class LabelsPostprocess(_Section):
    """Class names with the top class and the top-k probabilities (`--labels`)."""

    kind: Literal["labels"] = "labels"
    labels: FileRef = Field(description="one class name per line, in class-index order")
    count: int = Field(ge=2)
    source: str = Field(description="where the names come from")
    output: str = Field(description="the model output read as one score per class")
    scores: Literal["probabilities", "logits"] = Field(description="logits get a softmax")
    top_k: int = Field(ge=1)


Preprocess = Annotated[Union[TextPreprocess, ImagePreprocess, HookProcessing], Field(discriminator="kind")]
Postprocess = Annotated[Union[LabelsPostprocess, HookProcessing], Field(discriminator="kind")]


class ProcessingSection(_Section):
    """What runs before and after the model, and the signature the service serves."""

    preprocess: Preprocess | None = None
    postprocess: Postprocess | None = None
    signature: Signature = Field(description="the served signature: inputs and outputs after processing")
    sample: dict[str, Any] = Field(description="the request's inputs the build ran through the processing "
                                               "and the shipped model (the Lambda cold start sends it too)")

    @property
    def steps(self) -> list[TextPreprocess | ImagePreprocess | HookProcessing | LabelsPostprocess]:
        return [s for s in (self.preprocess, self.postprocess) if s is not None]

    @property
    def files(self) -> list[FileRef]:
        found: dict[str, FileRef] = {}
        for step in self.steps:
            for ref in (getattr(step, key, None) for key in ("tokenizer", "module", "labels")):
                if isinstance(ref, FileRef):
                    found[ref.path] = ref
        return list(found.values())

    def runtime_config(self) -> dict[str, Any]:
        """runtime.json's `processing`: the served signature and each step's settings. An input
        that takes files (encoded images) says so (`"content": "file"`): the Open Inference
        Protocol keeps its BYTES as bytes rather than text."""
        files = {self.preprocess.input} if isinstance(self.preprocess, ImagePreprocess) else set()
        return {
            "inputs": [{**t.model_dump(), **({"content": "file"} if t.name in files else {})}
                       for t in self.signature.inputs],
            "outputs": [t.model_dump() for t in self.signature.outputs],
            "preprocess": self.preprocess.model_dump() if self.preprocess else None,
            "postprocess": self.postprocess.model_dump() if self.postprocess else None,
        }
