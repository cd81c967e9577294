"""What a rollout ships: the facts both fleet engines need from an artifact folder."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Literal

from ..artifact import Artifact
from ..errors import InputError
from ..render.facts import AGENT_PORT
from ..manifest import HISTORY, SIGNATURE, RolloutRecord
from ..trust.signing import trust_artifact

# The parts of an artifact a device runs; container/, reports and IaC stay behind.
BUNDLE_PARTS = ("manifest.json", "model", "bento", "agent")


def bundle_parts(artifact: Path) -> list[str]:
    """What goes to a device: BUNDLE_PARTS, or the whole folder when it is signed, since the
    signature covers every file and the device checks it (templates/rollout/verify.yml);
    history.json, which the signature leaves out, stays behind."""
    if (artifact / SIGNATURE).is_file():
        return sorted(p.name for p in artifact.iterdir() if p.name != HISTORY)
    return list(BUNDLE_PARTS)


@dataclass(frozen=True)
class Release:
    artifact: Path
    name: str  # "<model>-<target>", the name of the service on every device
    version: str  # the image tag "<mlpack version>-<model sha256[:12]>": one per model build
    model_sha256: str
    target: str
    inputs: list[dict[str, Any]]
    service_port: int
    agent_port: int

    @property
    def probe(self) -> dict[str, Any]:
        return probe_request(self.inputs)


def read_release(path: Path, key: Path | None = None) -> Release:
    """Read and check an artifact for a rollout: it must hold a Bento and be intact, and its
    signature must verify with `key` (or $MLPACK_VERIFY_KEY) when one is given."""
    artifact = Artifact.open(path)
    manifest = artifact.manifest
    if manifest.bento is None:
        raise InputError(
            f"{artifact.name} has no Bento to run on devices (target {manifest.target.name})",
            "build it for an edge or server target, e.g. `mlpack build --target arm-edge`",
        )
    trust_artifact(artifact, "rolled out", key)
    return Release(
        artifact=artifact.root,
        name=manifest.artifact,
        version=manifest.image.tag,
        model_sha256=manifest.model.sha256,
        target=manifest.target.name,
        inputs=[spec.model_dump() for spec in manifest.model.signature.inputs],
        service_port=manifest.target.serving.port,  # as built, never the installed target file
        agent_port=_agent_port(artifact.root),
    )


def probe_request(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The health check's inference: one row of zeros per input, in /predict's JSON shape."""
    import numpy as np

    body = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in (spec.get("shape") or [])]
        dtype = spec["dtype"]
        if dtype in ("str", "object", "string", "bytes"):
            body[spec["name"]] = np.full(shape, "", dtype=object).tolist()
        else:
            body[spec["name"]] = np.zeros(shape, dtype=dtype).tolist()
    return {"inputs": body}


def write_bundle(release: Release, dest: Path) -> Path:
    """A .tar.gz of what a device needs, unpacked on each device as versions/<version>/."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for part in bundle_parts(release.artifact):
            path = release.artifact / part
            if path.exists():
                tar.add(path, arcname=part, filter=_readable_by_the_service)
    return dest


def _readable_by_the_service(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root's files that every user may read, none may write. The build leaves its folder
    mode 0700 and the manifest 0600 (it is made in a private temporary folder), but on a
    device the units run as a DynamicUser= of systemd, which owns nothing it could be given
    in advance: it reads the version through the "other" bits (tests/test_systemd_units.py)."""
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    member.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
    return member


def unpacked_size(bundle: Path, block: int = 4096) -> int:
    """Disk a bundle takes once unpacked: each file rounded up to whole blocks, plus a block
    per folder (the device's disk check compares this with its free space)."""
    total = 0
    with tarfile.open(bundle) as tar:
        for member in tar:
            total += -(-member.size // block) * block if member.isfile() else block
    return total


def _agent_port(artifact: Path) -> int:
    try:
        config = json.loads((artifact / "agent" / "agent.json").read_text(encoding="utf-8"))
        return int(config["prometheus"]["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return AGENT_PORT


def record_rollout(path: Path, engine: Literal["ansible", "greengrass"], fleet: str, version: str,
                   outcome: str) -> None:
    """Remember in the artifact's history.json where it went, and how: the last rollouts, newest last."""
    record = RolloutRecord(at=datetime.now(timezone.utc).replace(microsecond=0), engine=engine, fleet=fleet,
                           version=version, outcome=outcome)
    Artifact.open(path).record(lambda h: h.record_rollout(record))
