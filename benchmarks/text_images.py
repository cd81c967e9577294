"""Images of text drawn here, for PP-OCR's detector (pages) and recognizer (one-line crops).

Words from the standard library's docstrings, drawn with Pillow's built-in font at random
sizes, inks and paper shades: nothing is downloaded. Real text matters: on pages of
scikit-learn's handwritten digits (what `optimize_bench.ocr_images` draws) PP-OCRv4's detector
finds almost no text, its probability maps are near zero, and the cosine of an int8 map to such
a float map measures noise (one page's was 0.0016).
"""

from __future__ import annotations

import re

import numpy as np

PAGE, LINE_HEIGHT, LINE_WIDTH = 256, 48, 320
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _words() -> list[str]:
    import inspect
    import json as json_module
    import os
    import textwrap

    text = " ".join(module.__doc__ or "" for module in (json_module, os, textwrap, inspect, re))
    return re.findall(r"[A-Za-z][A-Za-z0-9,.'-]{1,14}", text)


def _draw_lines(width: int, height: int, rng: np.random.Generator, words: list[str], one_line: bool):
    from PIL import Image, ImageDraw, ImageFont

    paper = tuple(int(v) for v in rng.integers(190, 256, 3))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    y = 0 if one_line else int(rng.integers(4, 20))
    while y < height - 20 or (one_line and y == 0):
        size = int(rng.integers(26, 34)) if one_line else int(rng.integers(12, 28))
        font = ImageFont.load_default(size=size)
        line = " ".join(rng.choice(words, int(rng.integers(1, 4) if one_line else rng.integers(2, 6))))
        ink = tuple(int(v) for v in rng.integers(0, 80, 3))
        x = int(rng.integers(2, 12)) if one_line else int(rng.integers(2, width // 3))
        draw.text((x, (height - size) // 2 - 2 if one_line else y), line, fill=ink, font=font)
        if one_line:
            break
        y += size + int(rng.integers(6, 30))
    return np.asarray(image, np.float32) / 255.0


def text_pages(count: int, seed: int, size: int = PAGE) -> np.ndarray:
    """Pages of text lines, normalised as PP-OCR's detector expects (ImageNet mean and std, NCHW)."""
    rng, words = np.random.default_rng(seed), _words()
    pages = [(_draw_lines(size, size, rng, words, one_line=False) - MEAN) / STD for _ in range(count)]
    return np.stack(pages).transpose(0, 3, 1, 2).astype(np.float32)


def text_lines(count: int, seed: int) -> np.ndarray:
    """Crops of one line of words, normalised as PP-OCR's recognizer expects ((x - 0.5) / 0.5, NCHW)."""
    rng, words = np.random.default_rng(seed), _words()
    lines = [(_draw_lines(LINE_WIDTH, LINE_HEIGHT, rng, words, one_line=True) - 0.5) / 0.5 for _ in range(count)]
    return np.stack(lines).transpose(0, 3, 1, 2).astype(np.float32)
