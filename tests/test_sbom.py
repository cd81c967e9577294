"""sbom.cdx.json: every artifact's CycloneDX 1.6 bill of materials (mlpack.sbom)."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from packaging.utils import canonicalize_name

from mlpack.model_info import sha256_file
from mlpack.sbom import _pick_wheel, supported_tags

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
        assert "protobuf" not in shipped  # removed with onnxruntime's model tools (lambda_prune.py)
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
