"""Attach an image's SBOM in the registry, beside the image it describes (`mlpack push`).

The SBOM goes up as an OCI artifact: a manifest of `artifactType`
application/vnd.cyclonedx+json, the empty config, one layer (the document) and a `subject`
naming the image's manifest. A registry that implements the OCI 1.1 referrers API says so
with an `OCI-Subject` header and lists the SBOM under /v2/<name>/referrers/<digest>. One
that does not (Docker's distribution 2.8, Debian's docker-registry) gets the same manifest
under the tag `sha256-<image digest hex>.sbom`, the tag-schema fallback that clients such as
cosign and oras look up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from .registry import RegistryClient, digest_of

SBOM_TYPE = "application/vnd.cyclonedx+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


@dataclass(frozen=True)
class Attached:
    digest: str  # of the SBOM's artifact manifest
    how: Literal["referrers", "tag"]
    tag: str | None  # the fallback tag, when the registry has no referrers API


def sbom_manifest(sbom: bytes, subject_digest: str, subject_type: str, subject_size: int, created: str) -> bytes:
    """The OCI artifact manifest for an SBOM about the image `subject_digest`."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG),
                   "data": "e30="},
        "layers": [{"mediaType": SBOM_TYPE, "digest": digest_of(sbom), "size": len(sbom),
                    "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"}}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
        "annotations": {"org.opencontainers.image.created": created},
    }
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def fallback_tag(subject_digest: str) -> str:
    return subject_digest.replace(":", "-") + ".sbom"


def attach_sbom(client: RegistryClient, sbom: bytes, subject_digest: str, subject_type: str, subject_size: int,
                created: str) -> Attached:
    client.put_blob(EMPTY_CONFIG)
    client.put_blob(sbom)
    body = sbom_manifest(sbom, subject_digest, subject_type, subject_size, created)
    digest, headers = client.put_manifest_response(digest_of(body), body, OCI_MANIFEST, "the SBOM")
    if {k.lower(): v for k, v in headers.items()}.get("oci-subject") == subject_digest:
        return Attached(digest, "referrers", None)
    tag = fallback_tag(subject_digest)
    client.put_manifest_response(tag, body, OCI_MANIFEST, "the SBOM")
    return Attached(digest, "tag", tag)
