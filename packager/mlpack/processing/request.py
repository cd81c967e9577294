"""What the user asks for: `mlpack build` (and `inspect`, `optimize`) processing options."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

NO_TOKENIZER = "none"  # --tokenizer none: ignore a tokenizer.json beside the model
MODEL_LABELS = "model"  # --labels model: the model's own class labels


class ProcessingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokenizer: str | None = Field(None, description="tokenizer.json, or 'none'; default: one beside the model")
    labels: str | None = Field(None, description="labels.txt (one class name per line), or 'model'")
    top_k: int = Field(5, ge=1, description="classes answered with their probabilities")
    image_preprocess: Path | None = Field(None, description="an image preprocessing spec (.toml)")
    hook: Path | None = Field(None, description="a Python module with preprocess and/or postprocess")
