"""`mlpack deploy` of signed artifacts on the moto server (fixtures from tests/test_deploy.py):
a tampered or unsigned artifact is refused when a key is given, and the stack stays as it was."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.artifact import Artifact
from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.signing import key_from, sign_artifact

from .signing_support import make_keys
from .test_deploy import (  # noqa: F401 - fixtures
    _client, _code_sha, _refresh_manifest, _run, _stack, artifact, aws_env, built, endpoint, pytestmark, server,
    stack_name,
)


@pytest.fixture
def keys(tmp_path: Path):
    return make_keys(tmp_path / "keys")


def test_a_signed_artifact_deploys_and_a_tampered_one_leaves_the_stack_as_it_was(
    aws_env: str, artifact: Path, stack_name: str, keys, tmp_path: Path
) -> None:
    sign_artifact(Artifact.open(artifact), key_from(keys.private, "UNUSED"))
    first = _run(artifact, stack_name, key=keys.public)
    assert first.outcome == "created"
    stack_before = _stack(stack_name)
    events = len(_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"])
    code = _code_sha(first.function_arn)

    # New code in the zip, the manifest sealed again: the hashes agree, the signature does not.
    with zipfile.ZipFile(artifact / "lambda/function.zip", "a") as zf:
        zf.writestr("handler_extra.py", "print('not what was signed')\n")
    _refresh_manifest(artifact)
    with pytest.raises(MlpackError, match="signature does not verify.*changed since signing: lambda/function.zip"):
        _run(artifact, stack_name, key=keys.public)
    done = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name],
                              env={"MLPACK_VERIFY_KEY": str(keys.public)})
    assert done.exit_code == 1 and "signature does not verify" in done.output

    stack_after = _stack(stack_name)
    for key in ("StackStatus", "LastUpdatedTime", "Outputs"):
        assert stack_after.get(key) == stack_before.get(key), key
    assert len(_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]) == events
    assert _code_sha(first.function_arn) == code
    assert len(Artifact.open(artifact).manifest.deploys) == 1  # the refused deploy recorded nothing


def test_an_unsigned_artifact_is_refused_when_a_key_is_given(aws_env: str, artifact: Path, stack_name: str,
                                                              keys) -> None:
    with pytest.raises(MlpackError, match="is not signed, and a key was given"):
        _run(artifact, stack_name, key=keys.public)
    stacks = _client("cloudformation").list_stacks()["StackSummaries"]
    assert [s for s in stacks if s["StackName"] == stack_name] == []
    assert _client("s3").list_buckets()["Buckets"] == []  # not even the code was uploaded
