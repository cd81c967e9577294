"""`mlpack image`: build an artifact's OCI image from its rendered container context."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..fsutil import atomic_write, scratch_folder
from ..manifest import IMAGE_SBOM, ImageSection, Manifest
from ..progress import Bar, Progress
from ..trust.reproducible import epoch_of
from ..trust.sbom import SBOM, Contents, image_document, installed_packages, with_wheel_hashes
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
    builder.preflight(target.platform.oci)  # e.g. no emulation for a foreign platform: before any work
    # Staged beside the artifact (same file system: hard links, no copies of the model); a
    # killed `mlpack image` leaves it for the next build into that folder to remove.
    with scratch_folder("image", artifact.root.parent) as scratch:
        context = scratch.path / "context"
        with progress.step(f"Preparing the build context ({target.platform.python_platform} wheels, mlpack-agent)"):
            stage_context(artifact.root, target, context)
        with progress.step("Writing the image's software bill of materials (CycloneDX 1.6)"):
            sbom_text = write_image_sbom(artifact, context, base_image or target.image.base)
        dockerfile = context / "container" / "Dockerfile"
        with progress.step(f"Building {ref} for {target.platform.oci} with {builder.name}"), \
                progress.bar("image steps", total=len(instructions(dockerfile))) as bar:
            built = builder.build(context, dockerfile, ref, target.platform.oci,
                                  build_args, counting_steps(bar, progress.info), timestamp=epoch_of(artifact.manifest))

    def record(m: Manifest) -> None:
        # A new build invalidates any digest pushed before it.
        repository, _, tag = ref.rpartition(":")
        m.image = ImageSection(repository=repository, tag=tag, local=ref, id=built.id, platform=built.platform,
                               base=base_image or target.image.base,
                               sbom_sha256=hashlib.sha256(sbom_text.encode()).hexdigest())

    # Beside the manifest, which records its sha256 (not listed in `files`: it is not part
    # of what the build made). Both are signed files: a signature made before goes first.
    artifact.unsign()
    atomic_write(artifact.path(IMAGE_SBOM), sbom_text)
    artifact.update(record)
    progress.info(f"  image {ref} ({built.id[:19]})")
    note = artifact.resign_note()
    if note:
        progress.info(f"  {note}")
    return built


def instructions(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    return [line.split()[0].upper() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def counting_steps(bar: Bar, log: Callable[[str], None]) -> Callable[[str], None]:
    """A build log that also moves the bar one instruction on each of the builders'
    `STEP n/N` (buildah, numbered per stage: `[1/2] STEP 3/5`) or `Step n/N` (docker) lines."""
    def line(text: str) -> None:
        if _STEP.search(text):
            bar.advance()
        log(text)
    return line


_STEP = re.compile(r"(^|\] )\s*step \d+/\d+", re.I)


def write_image_sbom(artifact: Artifact, context: Path, base: str) -> str:
    """The image's SBOM, from the packages staged for it, into the context (the Dockerfile
    copies it to /opt/mlpack/sbom.cdx.json); returns its text."""
    from ..model.info import sha256_file

    manifest, container = artifact.manifest, context / "container"
    platform = manifest.target.platform
    sites = sorted(p for p in container.glob("*site-packages") if p.is_dir())
    packages, notes = with_wheel_hashes(installed_packages(*sites), platform.python_platform,
                                        platform.python_version, local_wheels=container / "wheels")
    built = artifact.path(SBOM)
    text = image_document(manifest, built.read_text(encoding="utf-8") if built.is_file() else None,
                          Contents(packages, base, notes), sha256_file(artifact.path(manifest.model.file)))
    staged = context / SBOM
    staged.unlink(missing_ok=True)  # a hard link to the artifact's own SBOM: never write through it
    staged.write_text(text, encoding="utf-8")
    return text
