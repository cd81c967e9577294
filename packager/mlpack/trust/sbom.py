"""Software bills of materials (CycloneDX 1.6 JSON, written with cyclonedx-python-lib).

One document lists what ships: the model as a `machine-learning-model` component (its
sha256, the source model's, the variant and the accuracy gate's verdict, with a short
model card), every Python package with its version, purl and the sha256 of its wheel,
mlpack's own runtime code, and the base image by reference.

Where the packages come from:
- installed folders (the Lambda zip, an image's site-packages): each `*.dist-info`, read
  with importlib.metadata; the wheel it was installed from is the one whose tags its
  WHEEL file lists;
- a Bento, whose environment is installed later from its pinned requirements: those.

The wheel hashes are the index's sha256 of each wheel file (`uv pip compile --format
pylock.toml --no-deps` for exactly those versions and the target platform; uv checks
them when it installs), or the sha256 of a local wheel file (mlpack-agent).

The document is reproducible: its serial number and timestamp derive from the build's
inputs (mlpack.trust.reproducible), components are sorted, keys are sorted.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..errors import MlpackError
from ..manifest import Manifest
from ..model.info import sha256_file
from .reproducible import epoch_of, timestamp
from ..uv import run_uv

SBOM = "sbom.cdx.json"  # in every artifact, listed in its manifest
MEDIA_TYPE = "application/vnd.cyclonedx+json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    tags: frozenset[str] = frozenset()  # the installed wheel's tags (empty: not installed here)
    license: str | None = None
    wheel_sha256: str | None = None
    wheel_url: str | None = None

    @property
    def purl(self) -> str:
        from packageurl import PackageURL

        return PackageURL(type="pypi", name=_normalize(self.name), version=self.version).to_string()


@dataclass
class Contents:
    """What one SBOM describes."""

    packages: list[Package]
    base_image: str | None
    notes: list[str] = field(default_factory=list)  # e.g. why wheel hashes are missing


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages(*folders: Path) -> list[Package]:
    """The distributions installed in site folders or zip files (e.g. a Lambda zip)."""
    found: dict[str, Package] = {}
    for folder in folders:
        for dist in metadata.distributions(path=[str(folder)]):
            name = dist.metadata["Name"]
            wheel = dist.read_text("WHEEL") or ""
            tags = frozenset(line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:"))
            licence = dist.metadata.get("License-Expression") or _short_license(dist.metadata.get("License"))
            found.setdefault(_normalize(name), Package(name=name, version=dist.version, tags=tags, license=licence))
    return sorted(found.values(), key=lambda p: _normalize(p.name))


def _short_license(text: str | None) -> str | None:
    """A License field that is a name, not the whole license text."""
    return text.strip() if text and len(text) < 80 and "\n" not in text.strip() else None


def pinned_packages(requirements: Iterable[str]) -> list[Package]:
    """`name==version` requirements (what a Bento declares) as packages, not installed."""
    packages = []
    for line in requirements:
        name, sep, version = line.partition("==")
        if sep:
            packages.append(Package(name=name.strip(), version=version.strip()))
    return packages


def with_wheel_hashes(packages: list[Package], python_platform: str, python_version: str,
                      local_wheels: Path | None = None) -> tuple[list[Package], list[str]]:
    """Each package with its wheel's sha256 and URL; notes for any that could not be had."""
    local = {}
    if local_wheels is not None:
        for wheel in sorted(local_wheels.glob("*.whl")):
            local[_normalize(wheel.name.split("-")[0])] = wheel
    hashed, notes = [], []
    remote = [p for p in packages if _normalize(p.name) not in local]
    try:
        index = _locked_wheels(remote, python_platform, python_version) if remote else {}
    except MlpackError as exc:
        index = {}
        notes.append(f"wheel hashes not available: {exc.message}")
    for package in packages:
        key = _normalize(package.name)
        if key in local:
            hashed.append(_replace(package, wheel_sha256=sha256_file(local[key]), wheel_url=local[key].name))
            continue
        wheel = _pick_wheel(index.get((key, package.version), []), package.tags, python_platform, python_version)
        if wheel is None:
            hashed.append(package)
            if index:
                notes.append(f"no wheel of {package.name} {package.version} for {python_platform} on the index")
        else:
            hashed.append(_replace(package, wheel_sha256=wheel["hashes"]["sha256"], wheel_url=wheel["url"]))
    return hashed, notes


def _replace(package: Package, **changes: Any) -> Package:
    from dataclasses import replace

    return replace(package, **changes)


def _locked_wheels(packages: list[Package], python_platform: str, python_version: str) -> dict:
    """(name, version) -> the wheels the index lists for the platform, from a PEP 751 lock."""
    from ..fsutil import scratch_folder

    with scratch_folder("sbom") as scratch:
        requirements, lock = scratch.path / "requirements.in", scratch.path / "pylock.toml"
        requirements.write_text("".join(f"{p.name}=={p.version}\n" for p in packages))
        # --python-version only names the wheel tags: without that interpreter here, uv would
        # otherwise try to download one (~10 s where the Python builds' host is unreachable).
        args = ["pip", "compile", "--quiet", "--format", "pylock.toml", "--no-deps", "--no-header",
                "--only-binary", ":all:", "--python-platform", python_platform, "--python-version", python_version,
                "--no-python-downloads", str(requirements), "-o", str(lock)]
        try:
            run_uv(args, "looking up the wheels' hashes")
        except MlpackError:
            run_uv([*args, "--offline"], "looking up the wheels' hashes (offline, from uv's cache)")
        data = tomllib.loads(lock.read_text())
    return {(_normalize(p["name"]), p["version"]): p.get("wheels", []) for p in data.get("packages", [])}


def _pick_wheel(wheels: list[dict], installed: frozenset[str], python_platform: str,
                python_version: str) -> dict | None:
    """The wheel installed (its tags are the WHEEL file's), else the one pip would choose."""
    from packaging.utils import parse_wheel_filename

    tagged = [(frozenset(str(t) for t in parse_wheel_filename(w["url"].rsplit("/", 1)[-1])[3]), w) for w in wheels]
    if installed:
        return next((w for tags, w in tagged if tags == installed), None)
    priority = {tag: i for i, tag in enumerate(supported_tags(python_platform, python_version))}
    ranked = sorted((min((priority[t] for t in tags if t in priority), default=None), i, w)
                    for i, (tags, w) in enumerate(tagged) if any(t in priority for t in tags))
    return ranked[0][2] if ranked else None


def supported_tags(python_platform: str, python_version: str) -> list[str]:
    """The wheel tags an interpreter of the target accepts, best first (as pip ranks them)."""
    from packaging import tags

    arch, _, policy = python_platform.partition("-")  # "x86_64-manylinux_2_28"
    glibc = int(policy.rsplit("_", 1)[-1]) if policy.startswith("manylinux_2_") else 17
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms += [f"{name}_{arch}" for minor, name in legacy.items() if minor <= glibc]
    version = tuple(int(part) for part in python_version.split("."))
    found = list(tags.cpython_tags(version, platforms=platforms)) + list(tags.compatible_tags(version, platforms=platforms))
    return [str(t) for t in found]


def document(manifest: Manifest, contents: Contents, model_sha256: str, gate: dict[str, Any],
             runtime_files: dict[str, str] | None = None) -> str:
    """The CycloneDX 1.6 JSON text for an artifact (or its image)."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6

    def sha256(value: str) -> HashType:
        return HashType(alg=HashAlgorithm.SHA_256, content=value)

    def props(values: dict[str, Any]) -> list[Property]:
        return [Property(name=k, value=str(v)) for k, v in sorted(values.items()) if v is not None and v != ""]

    m = manifest
    inputs_digest = m.build.digest if m.build is not None else m.model.sha256
    root = Component(type=ComponentType.APPLICATION, name=m.artifact, version=m.image.tag, bom_ref="artifact",
                     description=f"mlpack {m.target.name} artifact for {m.name}",
                     properties=props({"mlpack:target": m.target.name, "mlpack:platform": m.platform,
                                       "mlpack:build.digest": inputs_digest}))
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=m.name, version=m.image.tag, bom_ref="model",
        hashes=[sha256(model_sha256)], description=f"{m.model.file}: the {m.model.variant} variant of "
        f"{m.model.source.name}",
        properties=props({
            "mlpack:model.file": m.model.file, "mlpack:model.variant": m.model.variant,
            "mlpack:source.name": m.model.source.name, "mlpack:source.sha256": m.model.source.sha256,
            "mlpack:source.opset": m.model.source.opset, "mlpack:source.producer": m.model.source.producer,
            "mlpack:gate.passed": gate.get("passed"), "mlpack:gate.data_source": gate.get("data_source"),
            "mlpack:gate.verdict": gate.get("reason"),
            **{f"mlpack:gate.{k}": round(v, 6) for k, v in (gate.get("metrics") or {}).items()},
        }),
    )
    components = [model]
    for package in contents.packages:
        references = []
        if package.wheel_url and package.wheel_sha256 and package.wheel_url.startswith("https://"):
            references.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(package.wheel_url),
                                                hashes=[sha256(package.wheel_sha256)]))
        components.append(Component(
            type=ComponentType.LIBRARY, name=package.name, version=package.version, bom_ref=package.purl,
            purl=_purl(package), hashes=[sha256(package.wheel_sha256)] if package.wheel_sha256 else [],
            licenses=[LicenseExpression(package.license)] if package.license and _is_expression(package.license)
            else [], external_references=references,
            properties=props({"mlpack:wheel": package.wheel_url.rsplit("/", 1)[-1] if package.wheel_url else None,
                              "mlpack:wheel.tags": " ".join(sorted(package.tags)) or None}),
        ))
    for place, digest in sorted((runtime_files or {}).items()):
        components.append(Component(
            type=ComponentType.LIBRARY, name=place.rsplit("/", 1)[-1], version=__version__, bom_ref=f"mlpack:{place}",
            hashes=[sha256(digest)], description=f"mlpack's serving code, in the artifact at {place}/ (sha256 over "
            "its files' paths and sha256s)"))
    if contents.base_image:
        components.append(Component(type=ComponentType.CONTAINER, name=contents.base_image, bom_ref="base-image",
                                    description="the base image, by reference"))
    bom = Bom(components=components, serial_number=uuid.UUID(inputs_digest[:32]),
              metadata=BomMetaData(component=root, timestamp=timestamp(epoch_of(m)),
                                   properties=props({f"mlpack:note.{i}": n for i, n in enumerate(contents.notes)})))
    tool = Component(type=ComponentType.APPLICATION, name="mlpack", version=__version__)
    bom.metadata.tools.components.add(tool)
    bom.register_dependency(root, components)
    data = json.loads(JsonV1Dot6(bom).output_as_string())
    for item in data.get("components", []):
        if item.get("bom-ref") == "model":
            item["modelCard"] = model_card(m, gate)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _purl(package: Package) -> Any:
    from packageurl import PackageURL

    return PackageURL.from_string(package.purl)


def _is_expression(text: str) -> bool:
    from license_expression import get_spdx_licensing

    try:
        get_spdx_licensing().parse(text, validate=True)
        return True
    except Exception:  # noqa: BLE001 - anything the SPDX parser refuses is left out
        return False


def model_card(manifest: Manifest, gate: dict[str, Any]) -> dict[str, Any]:
    """A short CycloneDX model card: inputs and outputs, and the gate's measurements."""
    signature = manifest.model.signature
    tensors = lambda specs: [{"format": f"{s.name}: {s.dtype} {s.shape_text()}"} for s in specs]  # noqa: E731
    metrics = [{"type": key, "value": f"{value:.6g}", "slice": gate.get("data_source") or "calibration data"}
               for key, value in sorted((gate.get("metrics") or {}).items())]
    card: dict[str, Any] = {
        "modelParameters": {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs)},
        "considerations": {"technicalLimitations": [
            f"optimized for {manifest.target.name} ({manifest.target.platform.oci}) as the {manifest.model.variant} "
            f"variant; the accuracy gate {'passed' if gate.get('passed', True) else 'failed'}: "
            f"{gate.get('reason') or 'the float model, unchanged'}"]},
    }
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    return card


def image_document(manifest: Manifest, artifact_sbom: str | None, contents: Contents, model_sha256: str) -> str:
    """The image's SBOM: the packages as installed in the image and the base it was built on;
    the model component (with its model card) as the artifact's SBOM has it."""
    text = document(manifest, contents, model_sha256, {})
    if not artifact_sbom:
        return text
    data, built = json.loads(text), json.loads(artifact_sbom)
    model = next((c for c in built.get("components", []) if c.get("bom-ref") == "model"), None)
    if model is not None:
        data["components"] = [model if c.get("bom-ref") == "model" else c for c in data["components"]]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
