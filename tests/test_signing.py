"""`mlpack sign` / `mlpack verify --key`: OpenSSF model signing over the artifact folder.

The signature is checked two ways: by mlpack, and by the PyPI `model_signing` command on
its own, as a security team would check an artifact without mlpack.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.errors import InputError, MlpackError
from mlpack.model.info import sha256_file
from mlpack.trust.signing import Key, key_from, sign_artifact, verify_artifact

from .manifests import edit_json
from .pyramid import heavy
from .signing_support import flip_one_byte, make_certificates, make_keys, small_artifact
from .signing_support import model_signing_cli as run_model_signing

runner = CliRunner()


@pytest.fixture
def keys(tmp_path: Path):
    return make_keys(tmp_path / "keys")


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    return small_artifact(tmp_path / "model-x86-cpu")


def cli(*args: str, **env: str):
    return runner.invoke(app, list(args), env=env or None)


@pytest.fixture
@heavy
def model_signing_cli():
    """The PyPI `model_signing` command (a Python process of its own: seconds a run)."""
    return run_model_signing


@pytest.fixture
def model_signing_verify(model_signing_cli):
    """`model_signing verify key` of an artifact's signature.sig with a public key."""

    def verify(root: Path, public: Path):
        return model_signing_cli("verify", "key", str(root), "--signature", str(root / "signature.sig"),
                                 "--public_key", str(public))

    return verify


def test_sign_writes_a_signature_that_mlpack_and_the_model_signing_cli_both_verify(
    artifact, keys, model_signing_verify
) -> None:
    done = cli("sign", str(artifact.root), "--key", str(keys.private))
    assert done.exit_code == 0, done.output
    assert (artifact.root / "signature.sig").is_file()
    bundle = json.loads((artifact.root / "signature.sig").read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")

    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 0, done.output
    assert "signature verified" in done.output
    standalone = model_signing_verify(artifact.root, keys.public)
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr
    assert "Verification succeeded" in standalone.stdout + standalone.stderr


def test_one_changed_byte_of_the_model_fails_mlpack_and_the_model_signing_cli(
    artifact, keys, model_signing_verify
) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    flip_one_byte(artifact.root / "model" / "model.onnx")

    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1 and "changed: model/model.onnx" in done.output
    standalone = model_signing_verify(artifact.root, keys.public)
    assert standalone.returncode != 0
    assert "model/model.onnx" in standalone.stdout + standalone.stderr


def test_a_manifest_resealed_over_a_changed_model_passes_the_hashes_but_not_the_signature(artifact, keys) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    model = artifact.root / "model" / "model.onnx"
    flip_one_byte(model)
    edit_json(artifact.root, lambda m: m["model"].update(sha256=sha256_file(model)), rehash=True)

    assert cli("verify", str(artifact.root)).exit_code == 0  # the hashes alone are fooled
    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1
    assert "signature does not verify" in done.output and "model/model.onnx" in done.output


def test_a_signature_from_another_key_is_refused(artifact, keys, tmp_path: Path, model_signing_verify) -> None:
    sign_artifact(artifact, key_from(make_keys(tmp_path / "other").private, "UNUSED"))
    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1 and "signature does not verify" in done.output
    assert model_signing_verify(artifact.root, keys.public).returncode != 0


def test_an_unsigned_artifact_is_refused_when_a_key_is_given_or_configured(artifact, keys) -> None:
    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1 and "is not signed" in done.output and "mlpack sign" in done.output
    done = cli("verify", str(artifact.root), MLPACK_VERIFY_KEY=str(keys.public))
    assert done.exit_code == 1 and "is not signed" in done.output
    # Without a key an unsigned artifact is only checked against its manifest.
    done = cli("verify", str(artifact.root))
    assert done.exit_code == 0 and "not signed" in done.output


EDITS = {
    "image.digest": lambda m: m["image"].update(digest="sha256:" + "c" * 64),  # another image to deploy
    "memory_mb": lambda m: m.update(memory_mb=10240),
    "name": lambda m: m.update(name="other"),
    "files": lambda m: m["files"]["model/model.onnx"].update(sha256="e" * 64),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_manifest_fails_the_signature_in_mlpack_and_in_the_model_signing_cli(
    artifact, keys, edit, model_signing_verify
) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    edit_json(artifact.root, EDITS[edit])

    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1
    line = done.output.strip()
    assert len(line.splitlines()) == 1, line
    assert ("signature does not verify" in line and "changed since signing: manifest.json" in line) or \
        "changed: model/model.onnx" in line  # the files edit fails the hashes first
    # The device's check (templates/rollout/verify.yml runs this command) refuses it too.
    standalone = model_signing_verify(artifact.root, keys.public)
    assert standalone.returncode != 0 and "manifest.json" in standalone.stdout + standalone.stderr


def test_a_command_that_changes_a_signed_manifest_removes_the_signature_and_says_to_sign_again(
    artifact, keys, model_signing_verify) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    artifact.update(lambda m: setattr(m.image, "digest", "sha256:" + "c" * 64))  # as `mlpack push` does
    assert not (artifact.root / "signature.sig").exists()
    assert "no longer covered it and was removed: sign it again (mlpack sign" in artifact.resign_note()

    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1 and "is not signed" in done.output and "mlpack sign" in done.output
    assert cli("sign", str(artifact.root), "--key", str(keys.private)).exit_code == 0
    assert verify_artifact(Artifact.open(artifact.root), "deployed", key_from(keys.public, "UNUSED")).verified
    assert model_signing_verify(artifact.root, keys.public).returncode == 0


def test_deploy_and_rollout_records_go_to_history_and_keep_the_signature(artifact, keys, model_signing_verify) -> None:
    from datetime import datetime, timezone

    from mlpack.manifest import DeployRecord

    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    record = DeployRecord(at=datetime.now(timezone.utc), stack="s", stack_id=None, region="eu-west-1",
                          code="s3://b/k", function_arn=None, url=None)
    artifact.record(lambda h: h.record_deploy(record))  # as `mlpack deploy` does
    assert Artifact.open(artifact.root).history().deploys == [record]
    assert artifact.resign_note() is None
    assert verify_artifact(Artifact.open(artifact.root), "deployed", key_from(keys.public, "UNUSED")).verified
    assert model_signing_verify(artifact.root, keys.public).returncode == 0


def test_a_signature_that_leaves_the_manifest_unsigned_is_refused(artifact, keys, model_signing_verify) -> None:
    # As an mlpack that did not sign manifest.json signed: the library alone accepts it.
    from model_signing import hashing, signing

    config = signing.Config().set_hashing_config(hashing.Config().set_ignored_paths(
        paths=["signature.sig", "manifest.json"], ignore_git_paths=False))
    config.use_elliptic_key_signer(private_key=keys.private).sign(artifact.root, artifact.root / "signature.sig")
    edit_json(artifact.root, EDITS["image.digest"])
    assert model_signing_verify(artifact.root, keys.public).returncode == 0

    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1
    assert "the signature verifies but leaves manifest.json unsigned" in done.output and "mlpack sign" in done.output


@pytest.mark.parametrize("key, value", [
    ("lambda", {"zip": "../../evil.zip"}),
    ("model.file", "/etc/passwd"),
    ("files", {"../outside.txt": {"sha256": "a" * 64, "size": 1}}),
    ("bento", {"tag": "x:y", "path": "bento/../../elsewhere"}),
])
def test_a_manifest_naming_a_path_outside_the_artifact_is_refused_in_one_line(artifact, key, value) -> None:
    def change(m):
        section, _, field = key.partition(".")
        (m[section].update({field: value}) if field else m.update({section: value}))
    edit_json(artifact.root, change)
    done = cli("verify", str(artifact.root))
    assert done.exit_code == 2
    assert f"manifest.json has an invalid {key}" in done.output and "is not a relative path inside the artifact" \
        in done.output and len(done.output.strip().splitlines()) == 1


def test_a_link_in_the_artifact_is_refused_and_never_followed_out(artifact, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.onnx").write_bytes((artifact.root / "model" / "model.onnx").read_bytes())
    shutil.rmtree(artifact.root / "model")
    (artifact.root / "model").symlink_to(outside)  # the same bytes, from outside the artifact

    done = cli("verify", str(artifact.root))
    assert done.exit_code == 1 and f"link: model -> {outside}" in done.output
    with pytest.raises(InputError, match="model/model.onnx leads outside the artifact"):
        Artifact.open(artifact.root).path("model/model.onnx")


def test_verify_without_a_key_names_the_files_the_manifest_does_not_hash_and_why(artifact, keys) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    done = cli("verify", str(artifact.root))
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == f"{artifact.name}: 2 files match manifest.json; signed, signature not checked (no key given)"
    assert any(line.startswith("  not hashed in manifest.json: report.md (the build's measurements") for line in lines)
    assert "  not hashed in manifest.json: signature.sig (the signature itself)" in lines
    assert "integrity, not origin" in lines[-1]
    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.output.splitlines()[-1] == \
        "  the signature covers manifest.json and every other file but signature.sig and history.json"


def test_a_file_added_after_signing_is_refused(artifact, keys, model_signing_verify) -> None:
    sign_artifact(artifact, key_from(keys.private, "UNUSED"))
    (artifact.root / "agent" / "extra.json").write_text("{}")
    done = cli("verify", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 1 and "not in manifest: agent/extra.json" in done.output
    assert model_signing_verify(artifact.root, keys.public).returncode != 0


def test_keys_come_from_the_environment_as_text_and_are_never_printed(artifact, keys) -> None:
    private_text = keys.private.read_text()
    done = cli("sign", str(artifact.root), MLPACK_SIGNING_KEY=private_text)
    assert done.exit_code == 0, done.output
    done = cli("--debug", "verify", str(artifact.root), MLPACK_VERIFY_KEY=keys.public.read_text())
    assert done.exit_code == 0 and "from $MLPACK_VERIFY_KEY" in done.output
    secret_line = private_text.splitlines()[1]
    assert secret_line not in done.output
    # A wrong value is named, not echoed.
    done = cli("sign", str(artifact.root), MLPACK_SIGNING_KEY="not-a-key " + secret_line)
    assert done.exit_code != 0 and "MLPACK_SIGNING_KEY is neither PEM text nor the path" in done.output
    assert secret_line not in done.output


def test_sign_without_a_key_or_with_the_wrong_kind_of_key_fails_in_one_line(artifact, keys, tmp_path) -> None:
    done = cli("sign", str(artifact.root))
    assert done.exit_code == 2 and "no signing key given" in done.output
    done = cli("sign", str(artifact.root), "--key", str(keys.public))
    assert done.exit_code == 2 and "is not a private key" in done.output
    done = cli("verify", str(artifact.root), "--key", str(keys.private))
    assert done.exit_code == 2 and "is a private key" in done.output
    assert not (artifact.root / "signature.sig").exists()


def test_a_changed_artifact_is_never_signed(artifact, keys) -> None:
    flip_one_byte(artifact.root / "model" / "model.onnx")
    done = cli("sign", str(artifact.root), "--key", str(keys.private))
    assert done.exit_code == 2 and "never signed" in done.output
    assert not (artifact.root / "signature.sig").exists()


def test_certificate_mode_verifies_against_the_root_ca(artifact, tmp_path: Path, model_signing_cli) -> None:
    chain = make_certificates(tmp_path / "pki")
    done = cli("sign", str(artifact.root), "--key", str(chain.key), "--cert", str(chain.certificate),
               "--chain", str(chain.ca))
    assert done.exit_code == 0, done.output
    done = cli("verify", str(artifact.root), "--key", str(chain.ca))
    assert done.exit_code == 0, done.output
    standalone = model_signing_cli("verify", "certificate", str(artifact.root), "--signature",
                                   str(artifact.root / "signature.sig"), "--certificate_chain", str(chain.ca))
    assert standalone.returncode == 0, standalone.stdout + standalone.stderr

    other = make_certificates(tmp_path / "other-pki")
    done = cli("verify", str(artifact.root), "--key", str(other.ca))
    assert done.exit_code == 1 and "signature does not verify" in done.output


def test_a_signed_manifest_must_name_the_model_file_it_lists(artifact, keys) -> None:
    edit_json(artifact.root, lambda m: m["model"].update(sha256="d" * 64))  # the files still match
    sign_artifact(Artifact.open(artifact.root), key_from(keys.private, "UNUSED"))
    with pytest.raises(MlpackError, match="names model sha256 dddddddddddd, but the signed model/model.onnx"):
        verify_artifact(Artifact.open(artifact.root), "deployed", key_from(keys.public, "UNUSED"))


def test_a_key_file_that_does_not_exist_is_named(artifact, tmp_path: Path) -> None:
    done = cli("verify", str(artifact.root), "--key", str(tmp_path / "missing.pem"))
    assert done.exit_code == 2 and "missing.pem does not exist" in done.output
    assert isinstance(key_from(None, "MLPACK_TEST_UNSET_VARIABLE"), type(None))
    assert Key(origin="x", pem=b"-----BEGIN PUBLIC KEY-----\n").kind == "public"
