"""`mlpack deploy` of signed artifacts on the moto server (fixtures from tests/test_deploy.py):
a tampered, edited or unsigned artifact is refused when a key is given, and the stack stays as
it was; a deploy keeps the signature valid for the next one."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.trust.signing import key_from, sign_artifact

from .faults import nodeid, record_fault
from .manifests import edit_json
from .signing_support import make_keys
from .moto_support import (  # noqa: F401 - fixtures
    MOTO_SERVER, artifact, aws_client, aws_env, built, code_sha, endpoint, refresh_manifest, run_deploy, server,
    stack_info, stack_name,
)

pytestmark = MOTO_SERVER


@pytest.fixture
def keys(tmp_path: Path):
    return make_keys(tmp_path / "keys")


def test_a_signed_artifact_deploys_and_a_tampered_one_leaves_the_stack_as_it_was(
    aws_env: str, artifact: Path, stack_name: str, keys, tmp_path: Path
) -> None:
    sign_artifact(Artifact.open(artifact), key_from(keys.private, "UNUSED"))
    first = run_deploy(artifact, stack_name, key=keys.public)
    assert first.outcome == "created"
    stack_before = stack_info(stack_name)
    events = len(aws_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"])
    code = code_sha(first.function_arn)
    # The deploy went to history.json, outside the signature: the artifact deploys again.
    assert Artifact.open(artifact).history().deploys[-1].stack == stack_name
    assert run_deploy(artifact, stack_name, key=keys.public).outcome == "unchanged"

    # New code in the zip, the manifest sealed again: the hashes agree, the signature does not.
    with zipfile.ZipFile(artifact / "lambda/function.zip", "a") as zf:
        zf.writestr("handler_extra.py", "print('not what was signed')\n")
    refresh_manifest(artifact)
    with pytest.raises(MlpackError, match="signature does not verify.*changed since signing: lambda/function.zip"):
        run_deploy(artifact, stack_name, key=keys.public)
    done = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name],
                              env={"MLPACK_VERIFY_KEY": str(keys.public)})
    assert done.exit_code == 1 and "signature does not verify" in done.output

    stack_after = stack_info(stack_name)
    for key in ("StackStatus", "LastUpdatedTime", "Outputs"):
        assert stack_after.get(key) == stack_before.get(key), key
    assert len(aws_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]) == events
    assert code_sha(first.function_arn) == code
    assert len(Artifact.open(artifact).history().deploys) == 1  # the refused deploy recorded nothing


def test_an_unsigned_artifact_is_refused_when_a_key_is_given(aws_env: str, artifact: Path, stack_name: str,
                                                              keys) -> None:
    with pytest.raises(MlpackError, match="is not signed, and a key was given"):
        run_deploy(artifact, stack_name, key=keys.public)
    stacks = aws_client("cloudformation").list_stacks()["StackSummaries"]
    assert [s for s in stacks if s["StackName"] == stack_name] == []
    assert aws_client("s3").list_buckets()["Buckets"] == []  # not even the code was uploaded



EDITS = {
    # What finding 2 of issue 21 did: the zip moved outside, another image, more memory.
    "lambda.zip '../../evil.zip'": (lambda m: m["lambda"].update(zip="../../evil.zip"),
                                    "manifest.json has an invalid lambda.zip: Value error, '../../evil.zip' is not "
                                    "a relative path"),
    "image.digest of another image": (lambda m: m["image"].update(digest="sha256:" + "c" * 64),
                                      "changed since signing: manifest.json"),
    "memory_mb 10240": (lambda m: m.update(memory_mb=10240), "changed since signing: manifest.json"),
}


def test_an_edited_manifest_is_refused_in_one_line_before_anything_reaches_aws(
    aws_env: str, artifact: Path, stack_name: str, keys, tmp_path: Path
) -> None:
    sign_artifact(Artifact.open(artifact), key_from(keys.private, "UNUSED"))
    seen = []
    for number, (edit, (change, expected)) in enumerate(EDITS.items()):
        copy = shutil.copytree(artifact, tmp_path / f"edit-{number}" / "deep" / artifact.name)
        (copy.parent.parent / "evil.zip").write_bytes((copy / "lambda/function.zip").read_bytes())
        edit_json(copy, change)
        done = CliRunner().invoke(app, ["deploy", str(copy), "--stack-name", stack_name, "--dry-run",
                                        "--key", str(keys.public)])
        lines = done.output.strip().splitlines()
        assert done.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: "), (edit, done.output)
        assert expected in lines[0], (edit, lines[0])
        seen.append(lines[0])
    uploaded = aws_client("s3").list_buckets()["Buckets"]  # nothing uploaded, from inside or outside
    stacks = [s for s in aws_client("cloudformation").list_stacks()["StackSummaries"] if s["StackName"] == stack_name]
    assert uploaded == [] and stacks == []
    record_fault("manifest-edited", nodeid(), "after `mlpack sign`, manifest.json edited (" + "; ".join(EDITS)
                 + "), then `mlpack deploy --dry-run --key` on the moto server", " / ".join(seen),
                 len(uploaded) + len(stacks), f"{len(EDITS)} of {len(EDITS)} refused before any AWS call; no "
                 "bucket, object or stack made")
