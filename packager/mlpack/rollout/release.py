"""What a rollout ships: the facts both fleet engines need from an artifact folder."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..manifest import read_manifest, verify_files

# The parts of an artifact a device runs; container/, reports and IaC stay behind.
BUNDLE_PARTS = ("manifest.json", "model", "bento", "agent")
DEFAULT_AGENT_PORT = 9464
DEFAULT_SERVICE_PORT = 3000


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


def read_release(artifact: Path) -> Release:
    """Read and check an artifact for a rollout: it must be complete and hold a Bento."""
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    problems = verify_files(artifact, manifest)
    if problems:
        raise InputError(
            f"{artifact.name} does not match its manifest.json ({problems[0]}); a changed artifact is never rolled out",
            "rebuild it with `mlpack build`",
        )
    if "bento" not in manifest:
        raise InputError(
            f"{artifact.name} has no Bento to run on devices (target {manifest.get('target')})",
            "build it for an edge or server target, e.g. `mlpack build --target arm-edge`",
        )
    return Release(
        artifact=artifact,
        name=manifest["artifact"],
        version=manifest["image"]["tag"],
        model_sha256=manifest["model"]["sha256"],
        target=manifest["target"],
        inputs=manifest["model"]["signature"]["inputs"],
        service_port=_service_port(manifest["target"]),
        agent_port=_agent_port(artifact),
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
        for part in BUNDLE_PARTS:
            path = release.artifact / part
            if path.exists():
                tar.add(path, arcname=part)
    return dest


def _service_port(target_name: str) -> int:
    from ..targets import load_target

    try:
        return int(load_target(target_name).serving.port)
    except Exception:  # noqa: BLE001 - an artifact from a target this mlpack no longer knows
        return DEFAULT_SERVICE_PORT


def _agent_port(artifact: Path) -> int:
    try:
        config = json.loads((artifact / "agent" / "agent.json").read_text(encoding="utf-8"))
        return int(config["prometheus"]["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_AGENT_PORT
