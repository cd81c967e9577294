"""`mlpack push`: put built images in a registry and record exactly what landed there.

A push counts only after the registry's copy is read back: the manifest digest must be
the one the push reported, and its config must be the image that was built (the config
digest is the image id, the same locally and in every registry). Only then is
`image@sha256:...` written to manifest.json, atomically. Images of one model for amd64
and arm64 are pushed by architecture and joined under the tag by an OCI image index.
The digest is what deploys pin, so it is signed with the manifest: pushing a signed
artifact removes its signature, and says to sign it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..artifact import Artifact
from ..errors import InputError, MlpackError
from ..manifest import ImageIndex, Manifest
from ..manifest import IMAGE_SBOM
from ..progress import Progress
from ..trust.reproducible import epoch_of, timestamp
from ..trust.signing import trust_artifact
from .attach import attach_sbom
from .builder import ImageBuilder, PushedImage, PushFailed, select_builder
from .registry import Reference, RegistryClient, authfile_json, image_index

ATTEMPTS = 4
FIRST_DELAY_S = 1.0


@dataclass
class Pushed:
    artifact: Artifact
    ref: str  # registry/repo:tag
    digest: str
    platform: str
    size: int
    media_type: str
    sbom_digest: str | None = None  # the SBOM attached beside the image


@dataclass
class PushResult:
    images: list[Pushed]
    index_digest: str | None
    dest: Reference

    @property
    def pinned(self) -> str:
        return self.dest.at(self.index_digest or self.images[0].digest)


def push_artifacts(
    artifacts: list[Artifact], to: str, builder: ImageBuilder | None = None, progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep, key: Path | None = None,
) -> PushResult:
    progress = progress or Progress()
    for artifact in artifacts:  # what is pushed must be what was built, measured and signed
        trust_artifact(artifact, "pushed", key)
    _check_group(artifacts)
    dest = Reference.parse(to, default_tag=artifacts[0].manifest.image.tag)
    builder = builder or select_builder()
    for artifact in artifacts:
        _check_built(builder, artifact)

    client = RegistryClient(dest)
    multi = len(artifacts) > 1
    pushed: list[Pushed] = []
    with _authfile(dest.registry) as authfile, progress.bar(f"pushing {len(artifacts)} image(s)",
                                                            total=len(artifacts)) as bar:
        for artifact in artifacts:
            image = artifact.manifest.image
            arch = image.platform.split("/", 1)[1]
            target = dest.with_tag(f"{dest.tag}-{arch}") if multi else dest
            with progress.step(f"Pushing {image.local_ref} ({image.platform}) to {target}"):
                result = _push_with_retries(builder, image.local_ref, str(target), dest.insecure, progress,
                                            authfile, sleep)
            pushed.append(_verify(client, target, result, image.id, artifact, image.platform, progress))
            _attach_sbom(client, pushed[-1], progress)
            bar.advance()
    index_digest = None
    if multi:
        with progress.step(f"Pushing the multi-arch index {dest} ({', '.join(p.platform for p in pushed)})"):
            body = image_index([(p.digest, p.size, p.media_type, p.platform) for p in pushed])
            reported = client.put_manifest(dest.tag, body, "application/vnd.oci.image.index.v1+json")
            index_digest, _, stored = client.get_manifest(dest.tag)
            if index_digest != reported or stored != body:
                raise MlpackError(f"the registry holds {dest} as {index_digest}, not the index pushed ({reported})",
                                  "push again; another push to the same tag may have raced this one")
    result = PushResult(pushed, index_digest, dest)
    for item in pushed:
        _record(item, result)
        note = item.artifact.resign_note()
        if note:
            progress.info(f"  {note}")
    return result


def _check_group(artifacts: list[Artifact]) -> None:
    names = {a.manifest.name for a in artifacts}
    if len(names) > 1:
        raise InputError("a multi-arch push needs artifacts of one model, got " + ", ".join(sorted(names)),
                         "push them one at a time")
    for artifact in artifacts:
        if not artifact.manifest.image.id:
            raise InputError(f"{artifact.name} has no built image", f"run `mlpack image {artifact.root}` first")
    platforms = [a.manifest.image.platform for a in artifacts]
    if len(set(platforms)) != len(platforms):
        raise InputError(f"more than one artifact for the same platform ({', '.join(platforms)})",
                         "pass at most one artifact per platform")


def _check_built(builder: ImageBuilder, artifact: Artifact) -> None:
    image = artifact.manifest.image
    found = builder.image_id(image.local_ref)
    if found != image.id:
        state = "is not in the local image store" if found is None else f"is now {found[:19]}"
        raise InputError(f"image {image.local_ref} built for {artifact.name} {state} "
                         f"(manifest.json records {image.id[:19]})", f"run `mlpack image {artifact.root}` again")


def _push_with_retries(
    builder: ImageBuilder, ref: str, dest: str, insecure: bool, progress: Progress, authfile: Path | None,
    sleep: Callable[[float], None],
) -> PushedImage:
    delay = FIRST_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return builder.push(ref, dest, insecure, progress.info, authfile)
        except PushFailed as exc:
            if not exc.transient or attempt == ATTEMPTS:
                raise
            progress.info(f"  {exc.message}; retrying in {delay:.0f}s (attempt {attempt + 1} of {ATTEMPTS})")
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _verify(client: RegistryClient, target: Reference, result: PushedImage, image_id: str, artifact: Artifact,
            platform: str, progress: Progress) -> Pushed:
    """Read the pushed manifest back and check it is the image that was built."""
    digest, media_type, body = client.get_manifest(target.tag)
    if digest != result.digest:
        raise MlpackError(f"the registry holds {target} as {digest}, but the push reported {result.digest}",
                          "push again; another push to the same tag may have raced this one")
    config = json.loads(body).get("config", {}).get("digest")
    if config != image_id:
        raise MlpackError(f"the registry's {target} is image {config}, not the one built ({image_id})",
                          "push again")
    progress.info(f"  verified {target.at(digest)} (image {image_id[:19]})")
    return Pushed(artifact, str(target), digest, platform, len(body), media_type)


def _attach_sbom(client: RegistryClient, item: Pushed, progress: Progress) -> None:
    """The image's SBOM (image.cdx.json, as `mlpack image` wrote it) beside the pushed image."""
    artifact, recorded = item.artifact, item.artifact.manifest.image.sbom_sha256
    path = artifact.path(IMAGE_SBOM)
    if recorded is None or not path.is_file():
        progress.info(f"  no image SBOM to attach ({IMAGE_SBOM} is written by `mlpack image`)")
        return
    sbom = path.read_bytes()
    if hashlib.sha256(sbom).hexdigest() != recorded:
        raise MlpackError(f"{artifact.name}/{IMAGE_SBOM} changed since `mlpack image` wrote it",
                          f"run `mlpack image {artifact.root}` again")
    created = timestamp(epoch_of(artifact.manifest)).isoformat()
    with progress.step(f"Attaching the image's SBOM to {item.digest[:19]}"):
        attached = attach_sbom(client, sbom, item.digest, item.media_type, item.size, created)
    item.sbom_digest = attached.digest
    where = "as a referrer (OCI 1.1)" if attached.how == "referrers" else \
        f"under the tag {attached.tag} (the registry has no referrers API)"
    progress.info(f"  SBOM {attached.digest[:19]} attached {where}")


def _record(item: Pushed, result: PushResult) -> None:
    def change(manifest: Manifest) -> None:
        image = manifest.image
        index = None
        if result.index_digest:
            index = ImageIndex(tag=result.dest.tag, digest=result.index_digest,
                               ref=result.dest.at(result.index_digest), platforms=[p.platform for p in result.images])
        manifest.image = image.model_copy(update={
            "local": image.local_ref, "repository": result.dest.name, "tag": item.ref.rsplit(":", 1)[1],
            "digest": item.digest, "ref": result.dest.at(item.digest), "index": index,
            "sbom_ref": result.dest.at(item.sbom_digest) if item.sbom_digest else None,
        })

    item.artifact.update(change)


class _authfile:
    """Credentials from the docker config, as a private temporary auth file for buildah."""

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self.path: Path | None = None

    def __enter__(self) -> Path | None:
        document = authfile_json(self.registry)
        if document is None:
            return None
        fd, name = tempfile.mkstemp(prefix="mlpack-auth-", suffix=".json")
        with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600
            fh.write(document)
        self.path = Path(name)
        return self.path

    def __exit__(self, *_: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
