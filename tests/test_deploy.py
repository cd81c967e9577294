"""`mlpack deploy` against moto in server mode on 127.0.0.1.

boto3 honours AWS_ENDPOINT_URL natively, so the code under test is the code a user
runs; only the endpoint differs. Moto cannot invoke functions (that needs Docker):
the handler's behaviour is covered by tests/test_lambda.py.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import MlpackError

from .agent_harness import free_port
from .manifests import edit_json, read_history, read_json
from .moto_support import (  # noqa: F401 - fixtures
    ACCOUNT, MOTO_SERVER, REGION, artifact, aws_client, aws_env, built, code_sha, endpoint, refresh_manifest,
    run_deploy, server, stack_info, stack_name, write_template,
)

pytestmark = MOTO_SERVER

# ---------------------------------------------------------------- helpers

def _new_code(root: Path) -> None:
    """A new build of the artifact: different code in function.zip."""
    with zipfile.ZipFile(root / "lambda/function.zip", "a") as zf:
        zf.writestr("mlpack_build_note.txt", "second build\n")
    refresh_manifest(root)


def _pending_change_sets(stack: str) -> list[str]:
    """Change sets left unexecuted (moto, unlike CloudFormation, also lists executed ones)."""
    summaries = aws_client("cloudformation").list_change_sets(StackName=stack)["Summaries"]
    return [s["ChangeSetName"] for s in summaries if s.get("ExecutionStatus") != "EXECUTE_COMPLETE"]


def _one_line_error(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# ---------------------------------------------------------------- deploys

def test_first_deploy_creates_the_stack_and_prints_function_arn(aws_env: str, artifact: Path, stack_name: str) -> None:
    service_role = f"arn:aws:iam::{ACCOUNT}:role/cloudformation-deployer"
    result = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name, "--role-arn", service_role])
    assert result.exit_code == 0, result.output
    assert stack_info(stack_name)["RoleARN"] == service_role
    # Progress: the upload, the change set, then the stack's events until it settles.
    assert "uploading function.zip" in result.output and "Creating a change set (CREATE)" in result.output
    assert f"CREATE_COMPLETE              {stack_name} (AWS::CloudFormation::Stack)" in result.output
    stack = stack_info(stack_name)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    recorded = read_history(artifact)["deploys"][-1]
    assert recorded["stack"] == stack_name and recorded["region"] == REGION
    arn = recorded["function_arn"]
    assert arn.startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:")
    assert f"function: {arn}" in result.output
    # Lambda runs exactly the artifact's zip, taken from S3 at its content address.
    zip_sha = read_json(artifact)["files"]["lambda/function.zip"]["sha256"]
    assert recorded["code"].endswith(f"/function-{zip_sha}.zip")
    function = aws_client("lambda").get_function(FunctionName=arn.rsplit(":", 1)[1])["Configuration"]
    assert function["CodeSize"] == (artifact / "lambda/function.zip").stat().st_size
    assert function["Runtime"].startswith("python3")


def test_redeploying_the_same_artifact_changes_nothing(aws_env: str, artifact: Path, stack_name: str) -> None:
    first = run_deploy(artifact, stack_name)
    events_before = aws_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]
    again = run_deploy(artifact, stack_name)
    assert (first.outcome, again.outcome) == ("created", "unchanged")
    assert again.function_arn == first.function_arn
    events_after = aws_client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]
    assert len(events_after) == len(events_before)
    assert _pending_change_sets(stack_name) == []


def test_a_new_artifact_updates_the_function_in_place(aws_env: str, artifact: Path, stack_name: str) -> None:
    first = run_deploy(artifact, stack_name)
    old_sha = code_sha(first.function_arn)
    _new_code(artifact)
    second = run_deploy(artifact, stack_name)
    assert second.outcome == "updated"
    assert second.stack_id == first.stack_id and second.function_arn == first.function_arn
    assert stack_info(stack_name)["StackStatus"] == "UPDATE_COMPLETE"
    assert code_sha(second.function_arn) != old_sha


def test_dry_run_shows_the_change_set_and_leaves_nothing(aws_env: str, artifact: Path, stack_name: str) -> None:
    result = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name, "--dry-run", "-q"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "AWS::Lambda::Function" in result.output and "Add" in result.output
    stacks = aws_client("cloudformation").list_stacks()["StackSummaries"]
    assert all(s["StackName"] != stack_name or s["StackStatus"] == "DELETE_COMPLETE" for s in stacks)
    assert read_history(artifact)["deploys"] == []

    created = run_deploy(artifact, stack_name)
    deployed_sha = code_sha(created.function_arn)
    _new_code(artifact)
    preview = run_deploy(artifact, stack_name, dry_run=True)
    assert preview.outcome == "dry-run"
    assert any("Modify" in line and "AWS::Lambda::Function" in line for line in preview.changes)
    assert stack_info(stack_name)["StackStatus"] == "CREATE_COMPLETE"
    assert code_sha(created.function_arn) == deployed_sha
    assert _pending_change_sets(stack_name) == []


def test_a_template_over_the_inline_limit_goes_through_s3(
    aws_env: str, artifact: Path, stack_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpack.deploy import lambda_deploy

    monkeypatch.setattr(lambda_deploy, "TEMPLATE_BODY_LIMIT", 100)
    assert run_deploy(artifact, stack_name).outcome == "created"
    keys = [o["Key"] for o in aws_client("s3").list_objects_v2(Bucket=f"mlpack-deploy-{ACCOUNT}-{REGION}")["Contents"]]
    assert any(k.startswith(f"mlpack/{artifact.name}/template-") for k in keys)
    assert run_deploy(artifact, stack_name).outcome == "unchanged"


def test_function_url_is_printed_when_the_function_has_one(aws_env: str, artifact: Path, stack_name: str) -> None:
    first = run_deploy(artifact, stack_name)
    # moto's CloudFormation has no AWS::Lambda::Url; make the URL through the Lambda API.
    name = first.function_arn.rsplit(":", 1)[1]
    url = aws_client("lambda").create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    result = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name, "-q"])
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.output and f"url:      {url}" in result.output


def test_deploy_json_is_one_summary_on_stdout(aws_env: str, artifact: Path, stack_name: str) -> None:
    result = CliRunner().invoke(app, ["deploy", str(artifact), "--stack-name", stack_name, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stack"] == stack_name and summary["outcome"] == "created" and summary["region"] == REGION
    assert summary["function_arn"] == read_history(artifact)["deploys"][-1]["function_arn"]
    assert "Creating a change set (CREATE)" in result.stderr  # progress stays on stderr


# ---------------------------------------------------------------- failure and rollback

class _ResourceFailed(Exception):
    def __init__(self, logical_id: str, resource_type: str, status: str, reason: str) -> None:
        super().__init__(reason)
        self.logical_id, self.resource_type, self.status, self.reason = logical_id, resource_type, status, reason


@contextmanager
def cloudformation_rollback() -> Iterator[None]:
    """Give moto CloudFormation's failure semantics for change sets.

    moto applies a change set without failure handling (a TODO in moto's
    execute_change_set): the service error escapes the API call. CloudFormation
    instead records the resource as <ACTION>_FAILED with the service's message,
    rolls the stack back to its previous template and settles in
    UPDATE_ROLLBACK_COMPLETE (ROLLBACK_COMPLETE for a new stack). This adds exactly
    that, in the moto server running in this process."""
    from moto.cloudformation import models, parsing

    create, update = parsing.parse_and_create_resource, parsing.parse_and_update_resource
    execute = models.CloudFormationBackend.execute_change_set

    def failing(original: Callable[..., Any], status: str) -> Callable[..., Any]:
        def wrapper(logical_id: str, resource_json: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return original(logical_id, resource_json, *args, **kwargs)
            except Exception as exc:
                message = getattr(exc, "message", None) or " ".join(str(a) for a in exc.args[1:] or exc.args)
                raise _ResourceFailed(logical_id, resource_json["Type"], status,
                                      f'Resource handler returned message: "{message}"') from exc
        return wrapper

    def execute_with_rollback(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        previous_template, previous_parameters = stack.template, dict(stack.parameters or {})
        try:
            execute(self, change_set_name, stack_name)
        except _ResourceFailed as failed:
            event = models.Event(
                stack_id=stack.stack_id, stack_name=stack.name, logical_resource_id=failed.logical_id,
                physical_resource_id="", resource_type=failed.resource_type, resource_status=failed.status,
                resource_status_reason=failed.reason, resource_properties=None)
            stack.events.append(event)
            new = change_set.change_set_type == "CREATE"
            prefix = "ROLLBACK" if new else "UPDATE_ROLLBACK"
            stack._add_stack_event(f"{prefix}_IN_PROGRESS",
                                   resource_status_reason=f"The following resource(s) failed: [{failed.logical_id}]")
            if new:
                stack.resource_map.delete()
            else:
                stack.resource_map.update(stack.parse_template(previous_template), previous_parameters)
            stack._add_stack_event(f"{prefix}_COMPLETE")
            stack.status = f"{prefix}_COMPLETE"
            change_set.execution_status = "EXECUTE_FAILED"

    parsing.parse_and_create_resource = failing(create, "CREATE_FAILED")
    parsing.parse_and_update_resource = failing(update, "UPDATE_FAILED")
    models.CloudFormationBackend.execute_change_set = execute_with_rollback
    try:
        yield
    finally:
        parsing.parse_and_create_resource, parsing.parse_and_update_resource = create, update
        models.CloudFormationBackend.execute_change_set = execute


def _add_broken_function(root: Path) -> None:
    """A new artifact whose template adds a function with a role Lambda cannot assume."""
    text = (root / "iac/sam/template.yaml").read_text()
    broken = {"Broken": {"Type": "AWS::Lambda::Function", "Properties": {
        "Handler": "handler.handler", "Runtime": "python3.12",
        "Role": f"arn:aws:iam::{ACCOUNT}:role/does-not-exist",
        "Code": {"ZipFile": "def handler(event, context):\n    return 1\n"}}}}
    resources_at = text.index("\nResources:\n") + len("\nResources:\n")
    block = yaml.safe_dump(broken, default_flow_style=False)
    write_template(root, text[:resources_at] + "".join(f"  {line}\n" for line in block.splitlines())
                    + text[resources_at:])


def test_a_failed_update_is_rolled_back_and_names_the_failing_resource(
    aws_env: str, artifact: Path, stack_name: str
) -> None:
    good = run_deploy(artifact, stack_name)
    good_sha = code_sha(good.function_arn)
    bad = artifact.with_name("bad-" + artifact.name)
    shutil.copytree(artifact, bad)
    _new_code(bad)
    _add_broken_function(bad)
    with cloudformation_rollback():
        result = CliRunner().invoke(app, ["deploy", str(bad), "--stack-name", stack_name, "-q"])
    line = _one_line_error(result)
    assert "Broken (AWS::Lambda::Function) CREATE_FAILED" in line
    assert "The role defined for the function cannot be assumed by Lambda" in line
    assert "rolled the stack back" in line and "UPDATE_ROLLBACK_COMPLETE" in line
    assert stack_info(stack_name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert code_sha(good.function_arn) == good_sha, "the previous version must still be deployed"
    # After the rollback the stack holds the good artifact again: deploying it is a no-op.
    assert run_deploy(artifact, stack_name).outcome == "unchanged"


def test_a_failed_first_deploy_is_replaced_by_the_next(aws_env: str, artifact: Path, stack_name: str) -> None:
    _add_broken_function(artifact)
    with cloudformation_rollback(), pytest.raises(MlpackError) as failed:
        run_deploy(artifact, stack_name)
    assert "Broken (AWS::Lambda::Function) CREATE_FAILED" in failed.value.one_line()
    assert "the next deploy replaces it (ROLLBACK_COMPLETE)" in failed.value.one_line()
    assert stack_info(stack_name)["StackStatus"] == "ROLLBACK_COMPLETE"
    write_template(artifact, _without_broken(artifact))
    assert run_deploy(artifact, stack_name).outcome == "created"
    assert stack_info(stack_name)["StackStatus"] == "CREATE_COMPLETE"


def _without_broken(root: Path) -> str:
    lines = (root / "iac/sam/template.yaml").read_text().splitlines(keepends=True)
    start = lines.index("  Broken:\n")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    return "".join(lines[:start] + lines[end:])


# ---------------------------------------------------------------- credentials and endpoints

def test_missing_credentials_are_one_line(aws_env: str, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert "no AWS credentials found" in line and "aws configure" in line


def test_missing_region_is_one_line(aws_env: str, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert line == ("error: no AWS region configured; pass --region, set AWS_DEFAULT_REGION, or set `region` in "
                    "the profile (`aws configure`)")


def test_a_region_only_in_aws_region_is_named_with_the_variable_boto3_reads(
    aws_env: str, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert boto3.Session().region_name is None  # the installed boto3 ignores AWS_REGION: the hint must not name it
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact), "--dry-run"]))
    assert line == ("error: no AWS region configured: AWS_REGION=us-east-1 is set, but boto3 reads "
                    "AWS_DEFAULT_REGION; pass --region us-east-1, or export AWS_DEFAULT_REGION=us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # what the hint says to do: boto3 then has it
    assert boto3.Session().region_name == "us-east-1"


def test_unknown_profile_is_one_line(aws_env: str, artifact: Path) -> None:
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact), "--profile", "nope"]))
    assert "profile 'nope' is not configured" in line


def test_profile_and_region_resolve_like_the_aws_cli(
    aws_env: str, artifact: Path, stack_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    (tmp_path / "no-aws-config").write_text("[profile ml]\nregion = us-west-2\n")
    (tmp_path / "no-aws-credentials").write_text("[ml]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = s\n")
    result = run_deploy(artifact, stack_name, profile="ml", dry_run=True)
    assert result.region == "us-west-2"


def test_rejected_credentials_are_one_line(aws_env: str, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys from here on
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert "AWS rejected the credentials (InvalidClientTokenId" in line and "aws configure" in line


def test_an_endpoint_that_refuses_is_one_line(aws_env: str, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert "cannot reach http://127.0.0.1:" in line


def test_only_artifacts_with_a_lambda_package_deploy(aws_env: str, artifact: Path) -> None:
    edit_json(artifact, lambda m: m.update({"lambda": None}))
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert line == ("error: digits-demo-aws-lambda has no Lambda package (target aws-lambda); `mlpack deploy` "
                    "deploys artifacts built for a Lambda target; build one with `mlpack build --target aws-lambda`")


def test_a_modified_artifact_is_refused(aws_env: str, artifact: Path) -> None:
    with zipfile.ZipFile(artifact / "lambda/function.zip", "a") as zf:
        zf.writestr("tampered.txt", "x")
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact)]))
    assert "changed: lambda/function.zip" in line


# ---------------------------------------------------------------- image package

def _push_to_ecr(artifact: Path) -> str:
    """What `mlpack push --to <ECR>/<repo>` leaves behind: the image in ECR and, in the
    manifest, the repository with its registry, the digest and the pinned reference."""
    repository = read_json(artifact)["image"]["repository"]
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    ecr = aws_client("ecr")
    ecr.create_repository(repositoryName=repository)
    image_manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                 "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                            "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []})
    digest = ecr.put_image(repositoryName=repository, imageManifest=image_manifest,
                           imageTag="v1")["image"]["imageId"]["imageDigest"]
    pinned = f"{registry}/{repository}@{digest}"
    edit_json(artifact, lambda m: m["image"].update(
        repository=f"{registry}/{repository}", tag="v1", digest=digest, ref=pinned))
    return pinned


def test_image_package_deploys_the_pushed_digest(aws_env: str, artifact: Path, stack_name: str) -> None:
    image_uri = _push_to_ecr(artifact)
    result = run_deploy(artifact, stack_name, package="image")
    assert result.outcome == "created" and result.code == image_uri
    # moto's CloudFormation drops PackageType when it creates the function, so check
    # what CloudFormation was given: the function runs the image, pinned by digest.
    body = aws_client("cloudformation").get_template(StackName=stack_name)["TemplateBody"]
    template = body if isinstance(body, dict) else json.loads(body)
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Properties"]["Code"] == {"ImageUri": image_uri}
    assert "Handler" not in function["Properties"] and "Layers" not in function["Properties"]


def test_after_push_and_iac_the_image_template_deploys_by_digest(aws_env: str, artifact: Path, stack_name: str) -> None:
    image_uri = _push_to_ecr(artifact)
    regenerated = CliRunner().invoke(app, ["iac", str(artifact)])
    assert regenerated.exit_code == 0, regenerated.output
    result = run_deploy(artifact, stack_name)  # --package auto: the template now declares an image
    assert result.outcome == "created" and result.code == image_uri


def test_image_package_without_a_push_is_one_line_and_readies_the_repository(aws_env: str, artifact: Path) -> None:
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact), "--package", "image", "-q"]))
    repository = read_json(artifact)["image"]["repository"]
    assert "has not been pushed" in line
    assert f"mlpack push ARTIFACT --to {ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}" in line
    found = aws_client("ecr").describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert found["imageTagMutability"] == "IMMUTABLE" and found["imageScanningConfiguration"]["scanOnPush"]


def test_image_pushed_elsewhere_is_refused(aws_env: str, artifact: Path) -> None:
    edit_json(artifact, lambda m: m["image"].update(
        digest="sha256:" + "2" * 64, ref="registry.example.com/team/model@sha256:" + "2" * 64))
    line = _one_line_error(CliRunner().invoke(app, ["deploy", str(artifact), "--package", "image", "-q"]))
    assert "pushed to registry.example.com" in line and "only from this account's ECR" in line
