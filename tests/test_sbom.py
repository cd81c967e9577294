"""sbom.cdx.json: every artifact's CycloneDX 1.6 bill of materials (mlpack.trust.sbom)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from mlpack.model.info import sha256_file
from mlpack.trust.sbom import _pick_wheel, supported_tags

TARGETS = ("x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda")


def validate(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_every_artifact_has_a_valid_sbom_naming_the_runtime_and_the_model(demo_artifact, target: str) -> None:
    built = demo_artifact(target)
    text = (built.path / "sbom.cdx.json").read_text()
    validate(text)
    sbom, manifest = json.loads(text), built.manifest
    assert sbom["specVersion"] == "1.6"
    assert manifest.files["sbom.cdx.json"].sha256 == sha256_file(built.path / "sbom.cdx.json")

    libraries = {c["name"]: c for c in sbom["components"] if c["type"] == "library" and "purl" in c}
    runtime = manifest.target.runtime.onnxruntime
    assert libraries[runtime]["version"] == manifest.versions.onnxruntime
    assert libraries["numpy"]["version"] == manifest.versions.numpy
    assert libraries["numpy"]["purl"] == f"pkg:pypi/numpy@{manifest.versions.numpy}"
    for component in libraries.values():  # every package names the wheel it ships from, by sha256
        assert [h["alg"] for h in component["hashes"]] == ["SHA-256"], component["name"]
        wheel = component["externalReferences"][0]
        assert wheel["type"] == "distribution" and wheel["url"].endswith(".whl")
        assert wheel["hashes"][0]["content"] == component["hashes"][0]["content"]
    if manifest.bento is not None:
        assert libraries["bentoml"]["version"] == manifest.versions.bentoml
    else:  # the Lambda zip: exactly what is installed in it (pruned packages are not listed)
        with zipfile.ZipFile(built.path / "lambda" / "function.zip") as zf:
            shipped = {canonicalize_name(m.group(1)) for name in zf.namelist()
                       if (m := re.match(r"([^/]+)-[^-/]+\.dist-info/METADATA$", name))}
        assert {canonicalize_name(n) for n in libraries} == shipped
        assert "protobuf" not in shipped  # removed with onnxruntime's model tools (awslambda/prune.py)
    arch = "aarch64" if manifest.target.platform.arch == "aarch64" else "x86_64"
    assert arch in libraries["numpy"]["externalReferences"][0]["url"]

    model = next(c for c in sbom["components"] if c["type"] == "machine-learning-model")
    assert model["hashes"] == [{"alg": "SHA-256", "content": manifest.model.sha256}]
    properties = {p["name"]: p["value"] for p in model["properties"]}
    assert properties["mlpack:source.sha256"] == manifest.model.source.sha256
    assert properties["mlpack:model.variant"] == manifest.model.variant
    assert properties["mlpack:gate.passed"] == "True"
    assert model["modelCard"]["modelParameters"]["inputs"] == [{"format": "pixels: float32 [?, 64]"}]
    base = next(c for c in sbom["components"] if c["type"] == "container")
    assert base["name"] == manifest.target.image.base
    assert sbom["metadata"]["component"]["name"] == manifest.artifact


def test_the_installed_wheel_is_found_by_its_tags_else_the_one_pip_would_choose() -> None:
    base = "https://files.example/packages"
    wheels = [{"url": f"{base}/protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", "hashes": {"sha256": "a" * 64}},
              {"url": f"{base}/protobuf-7.36.2-py3-none-any.whl", "hashes": {"sha256": "b" * 64}},
              {"url": f"{base}/protobuf-7.36.2-cp310-abi3-manylinux2014_aarch64.whl", "hashes": {"sha256": "c" * 64}}]
    installed = frozenset({"py3-none-any"})
    assert _pick_wheel(wheels, installed, "x86_64-manylinux_2_28", "3.11")["hashes"]["sha256"] == "b" * 64
    assert _pick_wheel(wheels, frozenset(), "x86_64-manylinux_2_28", "3.11")["hashes"]["sha256"] == "a" * 64
    assert _pick_wheel(wheels, frozenset(), "aarch64-manylinux_2_28", "3.12")["hashes"]["sha256"] == "c" * 64
    assert _pick_wheel(wheels, frozenset({"cp312-cp312-win_amd64"}), "x86_64-manylinux_2_28", "3.12") is None
    assert supported_tags("x86_64-manylinux_2_28", "3.11")[0] == "cp311-cp311-manylinux_2_28_x86_64"


def install_by_hash(name: str, version: str, sha256: str, platform, folder: Path) -> subprocess.CompletedProcess:
    """uv installs name==version only if its wheel's sha256 is `sha256` (--require-hashes):
    uv hashes the wheel it has (its cache, where the build's wheels are) and refuses any
    other. Online only if the cache lacks it."""
    requirements = folder.with_suffix(".txt")
    requirements.write_text(f"{name}=={version} --hash=sha256:{sha256}\n")
    args = [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--target", str(folder), "--no-deps",
            "--no-compile", "--only-binary", ":all:", "--python-platform", platform.python_platform,
            "--python-version", platform.python_version, "--require-hashes", "-r", str(requirements)]
    done = subprocess.run([*args, "--offline"], capture_output=True, text=True)
    return done if done.returncode == 0 or "Hash mismatch" in done.stderr else subprocess.run(
        args, capture_output=True, text=True)


@pytest.mark.slow
def test_the_lambda_zips_sbom_hashes_are_those_of_the_wheels_whose_files_it_ships(demo_artifact, tmp_path) -> None:
    """Recomputed, not read from the document: each package's wheel is installed again by
    uv, which accepts it only if its sha256 is the SBOM's, and every file of the package
    in the zip is byte for byte that wheel's (pruned files are absent, bytecode is added).
    A Bento ships no wheels (its environment is installed from pinned requirements later):
    only the zip has wheels to compare with."""
    built = demo_artifact("aws-lambda")
    sbom = json.loads((built.path / "sbom.cdx.json").read_text())
    libraries = [c for c in sbom["components"] if c["type"] == "library" and "purl" in c]
    with zipfile.ZipFile(built.path / "lambda" / "function.zip") as zf:
        shipped = set(zf.namelist())
        for component in libraries:
            name, version, sha256 = component["name"], component["version"], component["hashes"][0]["content"]
            folder = tmp_path / canonicalize_name(name)
            done = install_by_hash(name, version, sha256, built.manifest.target.platform, folder)
            assert done.returncode == 0, f"{name} {version}: no wheel with the SBOM's sha256: {done.stderr[-1500:]}"
            wheel_files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
            same = [f for f in sorted(wheel_files & shipped) if ".dist-info/" not in f and not f.startswith("bin/")]
            assert len(same) >= 2, f"{name}: none of the wheel's files is in the zip"
            for file in same:
                assert hashlib.sha256(zf.read(file)).digest() == hashlib.sha256((folder / file).read_bytes()).digest(), \
                    f"{file} in the zip is not the file of {name}'s wheel {sha256[:12]}"
            # What the zip ships of the package (its RECORD lists it) comes from that wheel.
            record = next(f for f in shipped if re.fullmatch(rf"{re.escape(folder.name.replace('-', '_'))}-"
                                                              rf"[^/]+\.dist-info/RECORD", f, re.I))
            listed = {line.split(",")[0] for line in zf.read(record).decode().splitlines()}
            extra = sorted(f for f in listed & shipped - wheel_files
                           if ".dist-info/" not in f and "__pycache__/" not in f and not f.startswith("bin/"))
            assert extra == [], f"{name}: files in the zip that its wheel does not hold: {extra[:5]}"

