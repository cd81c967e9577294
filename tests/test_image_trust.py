"""Images that can be trusted: the same artifact built twice on the same base gives the same
image id and digest; the image carries its SBOM; `mlpack push` attaches the SBOM beside the
image in the registry, and refuses an artifact whose signature does not verify. The image
and the push change manifest.json, a signed file: they remove the signature and say so.

Slow: two buildah builds of the x86-cpu demo on the offline stand-in base (tests/standin.py).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.model.info import sha256_file
from mlpack.trust.signing import key_from, sign_artifact

from .image_support import buildah, image_config, own_image_name, registry, requires_image_tools
from .manifests import edit_json, read_json
from .signing_support import flip_one_byte, make_keys
from .standin import ensure_standin
from .pyramid import heavy

pytestmark = [pytest.mark.slow, requires_image_tools]


def cli(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):
    return make_keys(tmp_path_factory.mktemp("image-keys"))


IMAGE_OUTPUT: dict[Path, str] = {}  # what `mlpack image` printed, by artifact


@pytest.fixture(scope="module")
@heavy
def images(demo_artifact, tmp_path_factory, keys):
    """Two copies of the x86-cpu demo artifact, each signed, its image built, then signed again."""
    base = ensure_standin("amd64")
    out = tmp_path_factory.mktemp("trusted-images")
    built = []
    for copy in ("first", "second"):
        artifact = own_image_name(shutil.copytree(demo_artifact("x86-cpu").path,
                                                  out / copy / demo_artifact("x86-cpu").path.name), "image-trust")
        sign_artifact(Artifact.open(artifact), key_from(keys.private, "UNUSED"))
        result = cli("image", str(artifact), "--builder", "buildah", "--base-image", base)
        assert result.exit_code == 0, result.output
        IMAGE_OUTPUT[artifact] = result.output
        sign_artifact(Artifact.open(artifact), key_from(keys.private, "UNUSED"))  # signed last, as docs say
        built.append(artifact)
    yield built
    buildah("rmi", "-f", read_json(built[0])["image"]["id"], check=False)


def test_the_same_artifact_on_the_same_base_gives_the_same_image_and_digest(images, tmp_path: Path) -> None:
    first, second = (read_json(a)["image"] for a in images)
    assert first["id"] == second["id"]
    config = image_config(first["local"])
    assert config["OCIv1"]["created"].startswith("19"), "the image's time is the build's, not the clock's"
    assert config["Docker"]["config"]["Healthcheck"]["Test"][0] == "CMD"  # still a Docker-format image
    # Pushed twice (under two tags), the registry holds one manifest: the same digest.
    with registry(tmp_path / "registry") as host:
        digests = []
        for tag in ("a", "b"):
            pushed = buildah("push", "--tls-verify=false", "--digestfile", str(tmp_path / tag), first["local"],
                             f"docker://{host}/demo/same:{tag}")
            assert pushed.returncode == 0
            digests.append((tmp_path / tag).read_text().strip())
        assert digests[0] == digests[1]


def test_the_image_carries_its_sbom_and_the_artifact_keeps_a_copy(images) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    artifact = images[0]
    recorded = read_json(artifact)["image"]
    text = (artifact / "image.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert sha256_file(artifact / "image.cdx.json") == recorded["sbom_sha256"]
    names = {c["name"] for c in json.loads(text)["components"] if c["type"] == "library"}
    assert {"onnxruntime", "numpy", "bentoml", "mlpack-agent", "starlette"} <= names  # as installed in the image
    assert image_config(recorded["local"])["Docker"]["config"]["Labels"]["dev.mlpack.sbom"] == "/opt/mlpack/sbom.cdx.json"
    container = buildah("from", "--pull=never", recorded["local"]).stdout.strip()
    try:
        root = Path(buildah("mount", container).stdout.strip())
        assert (root / "opt/mlpack/sbom.cdx.json").read_text() == text
    finally:
        buildah("rm", container, check=False)

def test_building_the_image_of_a_signed_artifact_removes_the_signature_and_the_new_one_covers_it(
    images, keys
) -> None:
    # The image section and image.cdx.json are signed files: `mlpack image` removed the
    # signature made before it and said so; the one made after covers them.
    printed = " ".join(IMAGE_OUTPUT[images[0]].split())
    assert "signature.sig no longer covered it and was removed: sign it again (mlpack sign" in printed
    result = cli("verify", str(images[0]), "--key", str(keys.public))
    assert result.exit_code == 0, result.output
    signed = [r["name"] for r in json.loads(base64.b64decode(json.loads(
        (images[0] / "signature.sig").read_text())["dsseEnvelope"]["payload"]))["predicate"]["resources"]]
    assert {"manifest.json", "image.cdx.json"} <= set(signed)

def test_push_attaches_the_sbom_beside_the_image(images, keys, tmp_path: Path) -> None:
    # A copy: the push rewrites the manifest (and removes the signature) that other tests read.
    artifact = shutil.copytree(images[0], tmp_path / images[0].name)
    with registry(tmp_path / "registry") as host:
        result = cli("push", str(artifact), "--to", f"{host}/demo/digits:1", "--builder", "buildah",
                     "--key", str(keys.public))
        assert result.exit_code == 0, result.output
        # The digest deploys pin is in manifest.json: the push removed the signature it checked.
        assert "no longer covered it and was removed: sign it again" in " ".join(result.output.split())
        assert not (artifact / "signature.sig").exists()
        image = read_json(artifact)["image"]
        digest = image["digest"]
        # distribution 2.8 has no OCI 1.1 referrers API: the SBOM is under the fallback tag.
        assert requests.get(f"http://{host}/v2/demo/digits/referrers/{digest}").status_code == 404
        assert "has no referrers API" in result.output
        tag = digest.replace(":", "-") + ".sbom"
        response = requests.get(f"http://{host}/v2/demo/digits/manifests/{tag}",
                                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert response.status_code == 200
        attached = response.json()
        assert attached["artifactType"] == "application/vnd.cyclonedx+json"
        assert attached["subject"]["digest"] == digest
        assert image["sbom_ref"].endswith("@" + response.headers["Docker-Content-Digest"])
        layer = attached["layers"][0]["digest"]
        blob = requests.get(f"http://{host}/v2/demo/digits/blobs/{layer}").content
        assert blob == (artifact / "image.cdx.json").read_bytes()


def test_push_refuses_a_signed_artifact_whose_manifest_was_edited(images, keys, tmp_path: Path) -> None:
    artifact = shutil.copytree(images[1], tmp_path / images[1].name)
    edit_json(artifact, lambda m: m["image"].update(repository="registry.example/elsewhere"))
    with registry(tmp_path / "registry") as host:
        result = cli("push", str(artifact), "--to", f"{host}/demo/digits:3", "--builder", "buildah",
                     "--key", str(keys.public))
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert "changed since signing: manifest.json" in lines[0]
        assert requests.get(f"http://{host}/v2/demo/digits/tags/list").status_code == 404  # nothing pushed


def test_push_refuses_an_artifact_whose_signature_does_not_verify(images, keys, tmp_path: Path) -> None:
    artifact = shutil.copytree(images[1], tmp_path / images[1].name)  # its model is changed below
    model = artifact / "model" / "model.onnx"
    flip_one_byte(model)
    edit_json(artifact, lambda m: m["model"].update(sha256=sha256_file(model)), rehash=True)
    with registry(tmp_path / "registry") as host:
        result = cli("push", str(artifact), "--to", f"{host}/demo/digits:2", "--builder", "buildah",
                     MLPACK_VERIFY_KEY=str(keys.public))
        assert result.exit_code == 1 and "signature does not verify" in result.output
        assert requests.get(f"http://{host}/v2/demo/digits/tags/list").status_code == 404  # nothing pushed
    assert read_json(artifact)["image"]["digest"] is None
