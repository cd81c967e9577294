"""`mlpack deploy ARTIFACT`: an artifact with a Lambda package onto AWS Lambda via CloudFormation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError
from .application import Application, command
from .options import JsonOption, QuietOption, VerifyKeyOption


def _parameters(values: list[str]) -> dict[str, str]:
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--parameter {item!r} is not NAME=VALUE", "pass e.g. --parameter MemorySize=1024")
        parsed[key] = value
    return parsed


def deploy(
    app: Application,
    artifact: Annotated[Path, typer.Argument(help="An aws-lambda artifact folder from `mlpack build`.",
                                             show_default=False)],
    region: Annotated[Optional[str], typer.Option(
        help="AWS region (default: $AWS_DEFAULT_REGION, else the profile's region; boto3 does not read "
             "$AWS_REGION).")] = None,
    profile: Annotated[Optional[str], typer.Option(help="AWS profile (default: as boto3 resolves it).")] = None,
    stack_name: Annotated[Optional[str], typer.Option(help="CloudFormation stack (default: mlpack-<artifact>).")] = None,
    package: Annotated[str, typer.Option(
        help="zip: upload lambda/function.zip to S3; image: the image `mlpack push` recorded; "
             "auto: what the template declares.")] = "auto",
    bucket: Annotated[Optional[str], typer.Option(
        help="S3 bucket for the zip (default: mlpack-deploy-<account>-<region>, created if missing).")] = None,
    template: Annotated[Optional[Path], typer.Option(
        help="Template to deploy instead of the artifact's iac/sam/template.yaml.")] = None,
    parameter: Annotated[Optional[list[str]], typer.Option(
        "--parameter", "-p", help="Template parameter NAME=VALUE; repeatable.")] = None,
    role_arn: Annotated[Optional[str], typer.Option(
        help="CloudFormation service role to create the resources with (default: the caller's permissions).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change set, then delete it.")] = False,
    key: VerifyKeyOption = None,
    quiet: QuietOption = False,
    json_summary: JsonOption = False,
) -> None:
    """Deploy an aws-lambda artifact with CloudFormation and print the function ARN and URL.
    Re-running with the same artifact changes nothing; a failed update is rolled back."""
    from ..deploy import DeployRequest, deploy as run_deploy

    if package not in ("auto", "zip", "image"):
        raise InputError(f"--package {package!r} is not one of auto, zip, image", "pass --package zip or image")
    result = run_deploy(DeployRequest(
        artifact=artifact, region=region, profile=profile, stack_name=stack_name, package=package,  # type: ignore[arg-type]
        bucket=bucket, template=template, parameters=_parameters(parameter or []), role_arn=role_arn,
        dry_run=dry_run, key=key,
    ), app.progress(quiet))
    if json_summary:
        app.echo_json({"stack": result.stack_name, "stack_id": result.stack_id, "outcome": result.outcome,
                       "region": result.region, "code": result.code, "function_arn": result.function_arn,
                       "url": result.url, "changes": result.changes})
        return
    if result.outcome == "dry-run":
        app.echo(f"{result.stack_name}: dry run, change set deleted")
        for line in result.changes:
            app.echo(line)
        return
    app.echo(f"{result.stack_name}: {result.outcome} ({result.region})")
    app.echo(f"function: {result.function_arn or '(none found)'}")
    app.echo(f"url:      {result.url or '(no function URL)'}")


def register(cli: typer.Typer) -> None:
    cli.command("deploy")(command(deploy))
