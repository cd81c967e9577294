"""The artifact's SAM template, made ready for CloudFormation.

Like `aws cloudformation package`, the local code location of each function is
replaced by where the code now lives (an S3 object or an ECR image digest); then a
template that uses the SAM transform is translated to plain CloudFormation here,
with aws-sam-translator, so that CloudFormation (and moto) never has to run the
transform. Functions are found by resource type, never by logical name, so the
template is free to name its resources as it likes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import MlpackError

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
SAM_FUNCTION = "AWS::Serverless::Function"
CFN_FUNCTION = "AWS::Lambda::Function"
SAM_TEMPLATE = Path("iac/sam/template.yaml")

# CloudFormation's limit for an inline TemplateBody; larger ones go through S3.
TEMPLATE_BODY_LIMIT = 51_200


@dataclass(frozen=True)
class CodeLocation:
    """Where the function's code is: a zip in S3, or an image in ECR pinned by digest."""

    bucket: str | None = None
    key: str | None = None
    image_uri: str | None = None

    def describe(self) -> str:
        return self.image_uri or f"s3://{self.bucket}/{self.key}"


def load_template(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MlpackError(f"no CloudFormation/SAM template at {path}",
                          "build the artifact with IaC (`mlpack iac ARTIFACT`) or pass --template")
    _require_sam_translator()
    try:
        template = yaml.load(path.read_text(encoding="utf-8"), Loader=_template_loader())  # noqa: S506 (safe)
    except Exception as exc:  # yaml.YAMLError and friends; the message names the line
        raise MlpackError(f"{path} is not a valid template: {' '.join(str(exc).split())}",
                          "rebuild the artifact") from exc
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise MlpackError(f"{path} has no Resources section", "rebuild the artifact")
    return template


def _template_loader() -> type[yaml.SafeLoader]:
    """A SafeLoader that reads the short intrinsics (!Ref, !GetAtt, !Sub) as the AWS CLI
    does, with the AWS CLI's own constructor; on a subclass, so that yaml.safe_load
    elsewhere in the process is left as it was."""
    from samtranslator.yaml_helper import intrinsics_multi_constructor

    class CloudFormationLoader(yaml.SafeLoader):
        pass

    CloudFormationLoader.add_multi_constructor("!", intrinsics_multi_constructor)
    return CloudFormationLoader


def _require_sam_translator() -> None:
    from ..extras import require_module

    require_module("samtranslator", "aws-sam-translator", "aws", "`mlpack deploy`")


def uses_sam(template: dict[str, Any]) -> bool:
    transform = template.get("Transform", [])
    return SAM_TRANSFORM in ([transform] if isinstance(transform, str) else transform)


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Lambda function resource, SAM or plain, by logical id."""
    return {
        logical_id: resource for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") in (SAM_FUNCTION, CFN_FUNCTION)
    }


def wants_image(template: dict[str, Any]) -> bool:
    """True when the template's functions are image packages (PackageType: Image)."""
    found = functions(template)
    return bool(found) and all(
        r.get("Properties", {}).get("PackageType") == "Image" for r in found.values()
    )


def set_code_location(template: dict[str, Any], code: CodeLocation) -> dict[str, Any]:
    """A copy of the template whose functions all run `code`."""
    result = json.loads(json.dumps(template))
    found = functions(result)
    if not found:
        raise MlpackError("the template defines no Lambda function (AWS::Serverless::Function "
                          "or AWS::Lambda::Function)", "rebuild the artifact for --target aws-lambda")
    for resource in found.values():
        props = resource.setdefault("Properties", {})
        is_sam = resource["Type"] == SAM_FUNCTION
        if code.image_uri:
            for stale in ("CodeUri", "InlineCode", "Handler", "Runtime", "Layers"):
                props.pop(stale, None)
            props["PackageType"] = "Image"
            if is_sam:
                props["ImageUri"] = code.image_uri
            else:
                props["Code"] = {"ImageUri": code.image_uri}
        else:
            props.pop("ImageUri", None)
            props.pop("ImageConfig", None)
            if props.get("PackageType") == "Image":
                raise MlpackError("the template's function is an image package but no image was given",
                                  "deploy with --package image after `mlpack push`")
            if is_sam:
                props.pop("InlineCode", None)
                props["CodeUri"] = {"Bucket": code.bucket, "Key": code.key}
            else:
                props["Code"] = {"S3Bucket": code.bucket, "S3Key": code.key}
    return result


def missing_parameters(template: dict[str, Any], given: dict[str, str]) -> list[str]:
    return [
        name for name, spec in template.get("Parameters", {}).items()
        if name not in given and "Default" not in (spec or {})
    ]


def to_cloudformation(template: dict[str, Any], parameters: dict[str, str], session: Any) -> dict[str, Any]:
    """Translate a SAM template to plain CloudFormation, locally.

    `session` is the boto3 session of the deploy: the translator reads the region and
    partition from it for ARNs, and IAM's managed policy list only if the template
    names a managed policy by name."""
    if not uses_sam(template):
        return template
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.translator import Translator

    loader = ManagedPolicyLoader(session.client("iam"))
    translator = Translator(None, Parser(), boto_session=session)
    try:
        return translator.translate(json.loads(json.dumps(template)), parameter_values=dict(parameters),
                                    get_managed_policy_map=loader.load)
    except InvalidDocumentException as exc:
        causes = "; ".join(" ".join(str(cause).split()) for cause in exc.causes)
        raise MlpackError(f"the SAM template is invalid: {causes}", "rebuild the artifact") from exc
    finally:
        translator.metrics.publish()  # to its no-op publisher; otherwise it warns when collected


def template_body(template: dict[str, Any]) -> str:
    """Deterministic text: the same artifact must give the same body, or every re-deploy
    would look like a change."""
    return json.dumps(template, indent=1, sort_keys=True)
