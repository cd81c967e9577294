"""--image-preprocess spec.toml: read and check the spec, then fit it to the model's input.

Every problem is reported at once, by key: first the file's own (unknown keys, wrong
types, values that contradict each other), then those against the model (a size, layout
or dtype its input cannot take).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from ..errors import InputError
from ..model.info import ModelInfo, TensorSpec
from .schema import ImagePreprocess, ImageSpec

_FIX = "fix the keys named above (docs/processing.md lists them)"
_LAYOUT_AXES = {"NCHW": (1, 2, 3), "NHWC": (3, 1, 2)}  # channel, height, width axes


def load_spec(path: Path) -> ImageSpec:
    if not path.is_file():
        raise InputError(f"image preprocessing spec {path} does not exist", "pass a .toml file (docs/processing.md)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"image preprocessing spec {path.name} is not valid TOML: {exc}", _FIX) from None
    raw = raw.get("image", raw)  # the keys may sit at the top level or under [image]
    try:
        return ImageSpec.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"invalid image preprocessing spec {path.name}: {describe(exc)}", _FIX) from None


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)


def resolve_image(path: Path, info: ModelInfo) -> ImagePreprocess:
    spec = load_spec(path)
    tensors = [s for s in info.signature.inputs]
    if len(tensors) != 1:
        raise InputError(f"--image-preprocess fills one image input, and the model has {len(tensors)} inputs "
                         f"({', '.join(s.name for s in tensors)})", "fill several inputs with a --processing hook")
    feed = tensors[0]
    resolved, problems = fit_to_model(spec, feed)
    if problems:
        raise InputError(f"image preprocessing spec {path.name} does not fit model input {feed.name!r} "
                         f"({feed.dtype} {feed.shape_text()}): {'; '.join(problems)}", _FIX)
    return ImagePreprocess(feed=feed.name, spec=resolved)


def fit_to_model(spec: ImageSpec, feed: TensorSpec) -> tuple[ImageSpec, list[str]]:
    """The spec with what the model fixes filled in, and every problem with the fit."""
    if not feed.is_tensor or feed.shape is None or len(feed.shape) != 4:
        return spec, [f"an image input is a 4-D tensor (NCHW or NHWC), not {feed.dtype} {feed.shape_text()}"]
    shape = feed.shape
    problems: list[str] = []
    layout = spec.layout or _layout_from(shape)
    if layout is None:
        problems.append("layout: the input's shape does not show where the channels are: say NCHW or NHWC")
        return spec, problems
    channel, height, width = (shape[axis] for axis in _LAYOUT_AXES[layout])
    if isinstance(channel, int) and channel != spec.channel_count:
        problems.append(f"channels: {spec.channels} gives {spec.channel_count} channel(s), the input takes {channel}"
                        f" in layout {layout}")
    fixed = [d if isinstance(d, int) else None for d in (height, width)]
    size = spec.size or (fixed if None not in fixed else None)
    if size is None:
        problems.append("size: the input's height and width are not fixed: give size = [height, width]")
    elif any(f is not None and f != s for f, s in zip(fixed, size)):
        problems.append(f"size: {list(size)} but the input takes [{height}, {width}]")
    if spec.resize is not None and size is not None and spec.resize < max(size):
        problems.append(f"resize: {spec.resize} is smaller than size {list(size)}, so the centre crop would not fit")
    dtype = spec.dtype or feed.dtype
    if dtype not in ("float32", "float16", "uint8"):
        problems.append(f"dtype: the input is {feed.dtype}; images are fed as float32, float16 or uint8")
    elif dtype != feed.dtype:
        problems.append(f"dtype: {dtype} but the input takes {feed.dtype}")
    if problems:
        return spec, problems
    count = spec.channel_count
    resolved = spec.model_copy(update={
        "size": list(size), "layout": layout, "dtype": dtype,
        "mean": spec.mean or ([0.0] * count if dtype != "uint8" else None),
        "std": spec.std or ([1.0] * count if dtype != "uint8" else None),
    })
    return ImageSpec.model_validate(resolved.model_dump(exclude_unset=False)), []


def _layout_from(shape: list) -> str | None:
    """NCHW or NHWC, when only one of the two axes can be the channels (1 or 3 of them)."""
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first != last:
        return "NCHW" if first else "NHWC"
    return None
