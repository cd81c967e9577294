"""`mlpack image`: build an artifact's OCI image from its rendered container context."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..artifact import Artifact
from ..manifest import ImageSection, Manifest
from ..progress import Progress
from .builder import BuiltImage, ImageBuilder, select_builder
from .context import stage_context


def build_image(
    artifact: Artifact,
    builder: ImageBuilder | None = None,
    base_image: str | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build the image, tag it as the manifest names it and record its id in manifest.json."""
    progress = progress or Progress()
    target = artifact.manifest.target  # as built: never the installed target file
    builder = builder or select_builder()
    ref = artifact.manifest.image.local_ref
    build_args = {"BASE_IMAGE": base_image} if base_image else {}
    # Staged beside the artifact (same file system: hard links, no copies of the model).
    with tempfile.TemporaryDirectory(prefix=f".{artifact.name}.image-", dir=artifact.root.parent) as tmp:
        context = Path(tmp) / "context"
        with progress.step(f"Preparing the build context ({target.platform.python_platform} wheels, mlpack-agent)"):
            stage_context(artifact.root, target, context)
        with progress.step(f"Building {ref} for {target.platform.oci} with {builder.name}"):
            built = builder.build(context, context / "container" / "Dockerfile", ref, target.platform.oci,
                                  build_args, progress.info)

    def record(m: Manifest) -> None:
        # A new build invalidates any digest pushed before it.
        repository, _, tag = ref.rpartition(":")
        m.image = ImageSection(repository=repository, tag=tag, local=ref, id=built.id, platform=built.platform,
                               base=base_image or target.image.base)

    artifact.update(record)
    progress.info(f"  image {ref} ({built.id[:19]})")
    return built
