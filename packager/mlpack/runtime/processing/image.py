"""Encoded images in, the model's pixel tensor out: PNG or JPEG bytes (or their base64
text in JSON) decoded with Pillow and preprocessed as the artifact's spec says.

The steps, in order (the spec's keys in brackets): decode, apply the EXIF orientation,
convert to RGB or grey [channels]; scale the shorter side to [resize] and crop the
centre to [size] (torchvision's Resize + CenterCrop, same rounding), or scale straight
to [size] when there is no [resize]; divide by [scale], subtract [mean], divide by [std]
(not for uint8 models); reverse to BGR if asked [channels]; lay out as [layout];
cast to [dtype].
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Mapping

import numpy as np

from ..validation import RequestError

FORMATS = ("PNG", "JPEG")
# Pixels decoded per image at most: a small file can decode to gigabytes (a "decompression
# bomb"); 40 MP is a 7300 x 5500 photo.
MAX_PIXELS = 40_000_000


class ImagePreprocess:
    def __init__(self, step: Mapping[str, Any]) -> None:
        from PIL import Image

        self.input = step["input"]
        self.feed = step["feed"]
        self.spec = dict(step["spec"])
        Image.preinit()  # the PNG and JPEG decoders, loaded now: in the cold start, not the first request

    def __call__(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        values = np.asarray(arrays[self.input], dtype=object).ravel().tolist()
        return {self.feed: np.stack([self.pixels(self.decode(row, value)) for row, value in enumerate(values)])}

    def decode(self, row: int, value: Any):
        """One row's encoded image (bytes, or base64 text) as a Pillow image."""
        from PIL import Image, UnidentifiedImageError

        where = f"input {self.input!r} row {row}"
        if isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(f"{where} is text but not base64: send the PNG or JPEG file's bytes "
                                   "base64-encoded") from None
        if not isinstance(value, (bytes, bytearray)):
            raise RequestError(f"{where} is a {type(value).__name__}: expected a PNG or JPEG file")
        try:
            image = Image.open(io.BytesIO(value), formats=FORMATS)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise RequestError(f"{where} is not a PNG or JPEG image") from None
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise RequestError(f"{where} is {width} x {height} pixels, over the {MAX_PIXELS:,} pixels "
                               "an image may have")
        try:
            image.load()
        except (OSError, Image.DecompressionBombError, ValueError):
            raise RequestError(f"{where} is a truncated or corrupt {image.format} image") from None
        return image

    def pixels(self, image) -> np.ndarray:
        """The spec applied to one decoded image: the model's input row."""
        from PIL import Image, ImageOps

        spec = self.spec
        image = ImageOps.exif_transpose(image)
        image = image.convert("L" if spec["channels"] == "L" else "RGB")
        height, width = spec["size"]
        resample = getattr(Image.Resampling, spec["resample"].upper())
        if spec.get("resize"):
            image = _resize_shorter(image, int(spec["resize"]), resample)
            image = _center_crop(image, height, width)
        else:
            image = image.resize((width, height), resample)
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        if spec["dtype"] != "uint8":
            array = array / np.float32(spec["scale"])
            array = (array - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
        if spec["channels"] == "BGR":
            array = array[:, :, ::-1]
        if spec["layout"] == "NCHW":
            array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array.astype(spec["dtype"]))


def _resize_shorter(image, size: int, resample):
    """Scale so the shorter side is `size`, keeping the aspect ratio (torchvision's rounding)."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image.resize(new, resample)


def _center_crop(image, height: int, width: int):
    """The centre `height` x `width` (torchvision's CenterCrop rounding)."""
    w, h = image.size
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return image.crop((left, top, left + width, top + height))
