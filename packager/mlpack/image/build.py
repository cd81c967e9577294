"""`mlpack image`: build an artifact's OCI image from its rendered container context."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..manifest import read_manifest, update_manifest
from ..progress import Progress
from ..targets import load_target
from .builder import BuiltImage, ImageBuilder, select_builder
from .context import stage_context


def local_ref(manifest: dict[str, Any]) -> str:
    """The local name:tag of the artifact's image (the manifest's names point at a registry once pushed)."""
    image = manifest["image"]
    return image.get("local") or f"{image['repository']}:{image['tag']}"


def build_image(
    artifact: Path,
    builder: ImageBuilder | None = None,
    base_image: str | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build the image, tag it as the manifest names it and record its id in manifest.json."""
    progress = progress or Progress()
    artifact = artifact.resolve()
    manifest = read_manifest(artifact)
    target = load_target(manifest["target"])
    builder = builder or select_builder()
    ref = local_ref(manifest)
    build_args = {"BASE_IMAGE": base_image} if base_image else {}
    # Staged beside the artifact (same file system: hard links, no copies of the model).
    with tempfile.TemporaryDirectory(prefix=f".{artifact.name}.image-", dir=artifact.parent) as tmp:
        context = Path(tmp) / "context"
        with progress.step(f"Preparing the build context ({target.platform.python_platform} wheels, mlpack-agent)"):
            stage_context(artifact, target, context)
        with progress.step(f"Building {ref} for {target.platform.oci} with {builder.name}"):
            built = builder.build(context, context / "container" / "Dockerfile", ref, target.platform.oci,
                                  build_args, progress.info)

    def record(data: dict[str, Any]) -> None:
        # A new build invalidates any digest pushed before it.
        repository, _, tag = ref.rpartition(":")
        data["image"].update({"repository": repository, "tag": tag, "digest": None, "local": ref,
                              "id": built.id, "platform": built.platform, "base": base_image or target.image.base})
        data["image"].pop("ref", None)
        data["image"].pop("index", None)

    update_manifest(artifact, record)
    progress.info(f"  image {ref} ({built.id[:19]})")
    return built

