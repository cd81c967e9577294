"""The libraries processing needs at serving: which distribution each step imports, and the
parts of their wheels a Lambda zip leaves out because the processing never loads them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

# The distribution each kind of step imports at serving.
PACKAGES = {"text": "tokenizers", "image": "pillow"}

# Pillow decodes PNG (zlib) and JPEG (libjpeg) in PIL/_imaging, which also links libtiff,
# libopenjp2 and libxcb and theirs; the other extension modules (AVIF, WebP, fonts, colour
# management, Tk, ImageMath, ImageMorph) and the libraries only they load are not needed:
# about 4 MB of a 50 MB zip. A prune that broke decoding would fail the build's cold-start
# run, which decodes the sample image from the zip's packages.
LAMBDA_PRUNE = {
    "pillow": [
        "PIL/_avif.*", "PIL/_webp.*", "PIL/_imagingft.*", "PIL/_imagingcms.*", "PIL/_imagingtk.*",
        "PIL/_imagingmath.*", "PIL/_imagingmorph.*",
        *(f"pillow.libs/{lib}-*" for lib in ("libavif", "libwebp", "libwebpdemux", "libwebpmux", "libsharpyuv",
                                            "libfreetype", "libharfbuzz", "libbrotlicommon", "libbrotlidec",
                                            "libpng16", "liblcms2")),
    ],
}


def pinned(kinds: set[str]) -> list[str]:
    """The distributions these kinds of step import, pinned at the versions installed here."""
    names = sorted({PACKAGES[kind] for kind in kinds if kind in PACKAGES})
    return [f"{name}=={metadata.version(name)}" for name in names]


def prune_for_lambda(site: Path, requirements: list[str]) -> list[str]:
    """Remove from an installed folder what the processing's packages never load; the removed
    paths, relative to `site`."""
    removed = []
    for requirement in requirements:
        for pattern in LAMBDA_PRUNE.get(requirement.split("==")[0].lower(), []):
            for path in sorted(site.glob(pattern)):
                path.unlink()
                removed.append(path.relative_to(site).as_posix())
    return removed
