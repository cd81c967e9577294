"""`mlpack deploy`: an aws-lambda artifact onto AWS Lambda through CloudFormation.

check the artifact -> resolve the AWS session -> put the code where Lambda reads it
(zip in S3, or the pushed image in ECR) -> template with that code location, SAM
translated locally -> change set -> (dry run: show it, delete it) -> execute and
follow the stack events -> function ARN and URL, recorded in history.json (outside the
signature, so a signed artifact stays signed for the next deploy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from ..artifact import Artifact
from ..errors import InputError, MlpackError
from ..manifest import DeployRecord, Manifest
from ..progress import Progress
from ..trust.signing import trust_artifact
from . import code_location
from .aws import Aws, AwsError, aws_errors, connect
from .stack import Stack
from .template import (
    SAM_TEMPLATE, TEMPLATE_BODY_LIMIT, CodeLocation, load_template, missing_parameters,
    set_code_location, template_body, to_cloudformation, wants_image,
)

Package = Literal["auto", "zip", "image"]


@dataclass
class DeployRequest:
    artifact: Path
    region: str | None = None
    profile: str | None = None
    stack_name: str | None = None
    package: Package = "auto"
    bucket: str | None = None
    template: Path | None = None  # default: the artifact's iac/sam/template.yaml
    parameters: dict[str, str] = field(default_factory=dict)
    role_arn: str | None = None  # CloudFormation service role
    dry_run: bool = False
    poll_seconds: float = 2.0
    timeout_seconds: float = 1800.0
    key: Path | None = None  # public key the signature must verify with (default: $MLPACK_VERIFY_KEY)


@dataclass
class DeployResult:
    outcome: Literal["created", "updated", "unchanged", "dry-run"]
    stack_name: str
    stack_id: str | None
    region: str
    code: str
    function_arn: str | None = None
    url: str | None = None
    changes: list[str] = field(default_factory=list)


def default_stack_name(manifest: Manifest) -> str:
    return f"mlpack-{manifest.artifact}"


def check_artifact(root: Path, key: Path | None = None) -> Artifact:
    artifact = Artifact.open(root)
    if artifact.manifest.lambda_ is None:
        raise InputError(f"{artifact.name} has no Lambda package (target {artifact.manifest.target.name}); "
                         "`mlpack deploy` deploys artifacts built for a Lambda target",
                         "build one with `mlpack build --target aws-lambda`")
    trust_artifact(artifact, "deployed", key)
    return artifact


def deploy(request: DeployRequest, progress: Progress | None = None) -> DeployResult:
    progress = progress or Progress()
    artifact = check_artifact(request.artifact, request.key)
    root, manifest = artifact.root, artifact.manifest
    template = load_template(request.template or root / SAM_TEMPLATE)
    package = request.package if request.package != "auto" else ("image" if wants_image(template) else "zip")
    stack_name = request.stack_name or default_stack_name(manifest)

    aws = connect(request.region, request.profile)
    progress.info(f"Deploying {manifest.artifact} to stack {stack_name} in {aws.region} "
                  f"(account {aws.account}, {package} package)")
    bucket = request.bucket or code_location.default_bucket(aws)
    with progress.step("Putting the code where Lambda reads it"):
        if package == "image":
            code = code_location.pushed_image(aws, manifest, progress.info)
        else:
            code_location.ensure_bucket(aws, bucket, progress.info)
            code = code_location.upload_zip(aws, bucket, manifest.artifact, artifact.path(manifest.lambda_.zip),
                                            progress.info)

    body, url = _template(aws, template, code, request, manifest, bucket, package)
    stack = Stack(aws.client("cloudformation"), stack_name, progress.info,
                  poll_seconds=request.poll_seconds, timeout_seconds=request.timeout_seconds)
    kind = _stack_kind(stack, request.dry_run)
    with progress.step(f"Creating a change set ({kind})"):
        change_set = stack.create_change_set(
            kind, body, url, request.parameters,
            tags={"mlpack:artifact": manifest.artifact, "mlpack:model-sha256": manifest.model.sha256},
            description=f"mlpack {manifest.artifact}, model sha256 {manifest.model.sha256[:12]}",
            role_arn=request.role_arn,
        )
    changes = change_set.lines()
    result = DeployResult("unchanged", stack_name, change_set.stack_id, aws.region, code.describe(),
                          changes=changes)
    if change_set.empty:
        stack.delete_change_set(change_set)
        progress.info(f"No changes: stack {stack_name} already runs this artifact")
    elif request.dry_run:
        progress.info(f"Dry run: deleting the change set for stack {stack_name} without executing it")
        stack.discard(change_set)
        result.outcome = "dry-run"
        return result
    else:
        progress.info(f"Executing the change set on stack {stack_name}:")
        # On a terminal, a bar of the changed resources (and the stack itself) as they settle.
        with progress.bar(f"stack {stack_name}", total=len(changes) + 1) as bar:
            stack.log = _counting_settled(progress.info, bar.advance)
            stack.execute(change_set)
        result.outcome = "created" if kind == "CREATE" else "updated"
    result.function_arn, result.url = _function_endpoints(aws, stack_name)
    if result.outcome != "unchanged":
        _record(artifact, result)
    return result


def _counting_settled(log: Callable[[str], None], settled: Callable[[], None]) -> Callable[[str], None]:
    """The stack's event log, calling `settled` for every event that ends in *_COMPLETE."""
    def line(text: str) -> None:
        log(text)
        words = text.split()
        if len(words) > 1 and words[1].endswith("_COMPLETE"):
            settled()
    return line


def _template(
    aws: Aws, template: dict[str, Any], code: CodeLocation, request: DeployRequest,
    manifest: Manifest, bucket: str, package: str,
) -> tuple[str, str | None]:
    """The CloudFormation body, or an S3 URL when the body is over CloudFormation's limit."""
    located = set_code_location(template, code)
    missing = missing_parameters(located, request.parameters)
    if missing:
        raise InputError(f"the template needs values for {', '.join(missing)}",
                         "pass them with --parameter NAME=VALUE")
    body = template_body(to_cloudformation(located, request.parameters, aws.session))
    if len(body.encode()) <= TEMPLATE_BODY_LIMIT:
        return body, None
    if package == "image":
        code_location.ensure_bucket(aws, bucket, lambda _line: None)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return body, code_location.upload_template(aws, bucket, manifest.artifact, body, digest)


def _stack_kind(stack: Stack, dry_run: bool) -> str:
    if dry_run:
        current = stack.describe()
        if current is not None and current["StackStatus"] == "ROLLBACK_COMPLETE":
            raise MlpackError(f"stack {stack.name} is ROLLBACK_COMPLETE from a failed first deploy",
                              "a deploy without --dry-run replaces it")
    return stack.prepare()


def _function_endpoints(aws: Aws, stack_name: str) -> tuple[str | None, str | None]:
    """The deployed function's ARN and URL, found by resource type, not by name."""
    cfn, lam = aws.client("cloudformation"), aws.client("lambda")
    with aws_errors(f"listing the resources of stack {stack_name}"):
        pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        resources = [r for page in pages for r in page["StackResourceSummaries"]]
        outputs = cfn.describe_stacks(StackName=stack_name)["Stacks"][0].get("Outputs", [])
    names = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::Lambda::Function"]
    if not names:
        return None, None
    with aws_errors(f"reading Lambda function {names[0]}"):
        arn = lam.get_function(FunctionName=names[0])["Configuration"]["FunctionArn"]
    url = next((o["OutputValue"] for o in outputs if ".lambda-url." in str(o.get("OutputValue", ""))), None)
    if url is None:
        url = _function_url(lam, names[0])
    return arn, url


def _function_url(lam: Any, name: str) -> str | None:
    """A function URL on the function itself or on one of its aliases (SAM AutoPublishAlias)."""
    with aws_errors(f"listing the aliases of {name}"):
        qualifiers = [None] + [a["Name"] for a in lam.list_aliases(FunctionName=name).get("Aliases", [])]
    for qualifier in qualifiers:
        try:
            with aws_errors(f"reading the function URL of {name}"):
                found = lam.get_function_url_config(FunctionName=name, **({"Qualifier": qualifier} if qualifier else {}))
            return found["FunctionUrl"]
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
    return None


def _record(artifact: Artifact, result: DeployResult) -> None:
    """Remember where this artifact went: the last deploys, newest last."""
    record = DeployRecord(
        at=datetime.now(timezone.utc).replace(microsecond=0), stack=result.stack_name, stack_id=result.stack_id,
        region=result.region, code=result.code, function_arn=result.function_arn, url=result.url,
    )
    artifact.record(lambda h: h.record_deploy(record))
