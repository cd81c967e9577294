"""The sample request the build runs through the processing and the shipped model, recorded
in the manifest (`processing.sample`) so that the Lambda cold start sends it too."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from ..model.info import TensorSpec
from .schema import ImagePreprocess, TextPreprocess

SENTENCE = "mlpack runs this sentence through the tokenizer and the model before the artifact ships."


def text_sample(step: TextPreprocess) -> dict[str, Any]:
    return {step.input: [SENTENCE]}


def image_sample(step: ImagePreprocess) -> dict[str, Any]:
    """A PNG a little larger than the model's input (so resizing and cropping run), base64."""
    from PIL import Image

    height, width = step.spec.size
    rows, cols = np.mgrid[0 : height + height // 4, 0 : width + width // 2]
    pixels = np.stack([rows * 255 // max(rows.max(), 1), cols * 255 // max(cols.max(), 1),
                       (rows + cols) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return {step.input: [base64.b64encode(buffer.getvalue()).decode("ascii")]}


def tensor_sample(specs: list[TensorSpec]) -> dict[str, Any]:
    """One row per input: zeros (strings: a word), free axes of size 1."""
    sample = {}
    for spec in specs:
        shape = [d if isinstance(d, int) else 1 for d in (spec.shape or [1])]
        if spec.dtype in ("object", "str"):
            sample[spec.name] = np.full(shape, "example", dtype=object).tolist()
        else:
            sample[spec.name] = np.zeros(shape, dtype=spec.dtype).tolist()
    return sample
