"""The template half of `mlpack deploy`, offline: reading SAM with short intrinsics,
pointing every function at its code whatever its logical name, and translating SAM to
plain CloudFormation locally."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml

from mlpack.deploy.template import (
    CodeLocation, load_template, missing_parameters, set_code_location, template_body, to_cloudformation,
    uses_sam, wants_image,
)
from mlpack.errors import MlpackError

SAM = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Timeout: {Type: Number, Default: 30}
  Stage: {Type: String}
Resources:
  Predictor:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../../lambda/function.zip
      Handler: handler.handler
      Runtime: python3.12
      Timeout: !Ref Timeout
      Environment:
        Variables:
          STAGE: !Sub "${Stage}-${AWS::Region}"
      FunctionUrlConfig: {AuthType: AWS_IAM}
  Plain:
    Type: AWS::Lambda::Function
    Properties:
      Code: {ZipFile: "def handler(e, c): return 1"}
      Handler: index.handler
      Runtime: python3.12
      Role: !GetAtt PlainRole.Arn
  PlainRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
"""
ZIP = CodeLocation(bucket="b", key="mlpack/x/function-abc.zip")
IMAGE = CodeLocation(image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/x@sha256:" + "a" * 64)


@pytest.fixture
def template(tmp_path: Path) -> dict:
    path = tmp_path / "template.yaml"
    path.write_text(SAM)
    return load_template(path)


def test_short_intrinsics_read_as_the_aws_cli_reads_them(template: dict) -> None:
    props = template["Resources"]["Predictor"]["Properties"]
    assert props["Timeout"] == {"Ref": "Timeout"}
    assert props["Environment"]["Variables"]["STAGE"] == {"Fn::Sub": "${Stage}-${AWS::Region}"}
    assert template["Resources"]["Plain"]["Properties"]["Role"] == {"Fn::GetAtt": ["PlainRole", "Arn"]}
    assert uses_sam(template) and not wants_image(template)
    with pytest.raises(yaml.YAMLError):  # the process-wide safe loader is left alone
        yaml.safe_load("a: !Ref b")


def test_every_function_runs_the_uploaded_zip_whatever_its_name(template: dict) -> None:
    located = set_code_location(template, ZIP)
    assert located["Resources"]["Predictor"]["Properties"]["CodeUri"] == {"Bucket": "b", "Key": ZIP.key}
    assert located["Resources"]["Plain"]["Properties"]["Code"] == {"S3Bucket": "b", "S3Key": ZIP.key}
    assert template["Resources"]["Predictor"]["Properties"]["CodeUri"] == "../../lambda/function.zip", "a copy"


def test_an_image_replaces_zip_only_properties(template: dict) -> None:
    props = set_code_location(template, IMAGE)["Resources"]["Predictor"]["Properties"]
    assert props["PackageType"] == "Image" and props["ImageUri"] == IMAGE.image_uri
    assert not {"CodeUri", "Handler", "Runtime"} & set(props)


def test_parameters_without_defaults_must_be_given(template: dict) -> None:
    assert missing_parameters(template, {}) == ["Stage"]
    assert missing_parameters(template, {"Stage": "prod"}) == []


def test_sam_translates_to_plain_cloudformation_offline(template: dict) -> None:
    session = boto3.Session(region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    plain = to_cloudformation(set_code_location(template, ZIP), {"Stage": "prod"}, session)
    types = {r["Type"] for r in plain["Resources"].values()}
    assert "Transform" not in plain and not any(t.startswith("AWS::Serverless::") for t in types)
    assert {"AWS::Lambda::Function", "AWS::Lambda::Url", "AWS::IAM::Role"} <= types
    function = plain["Resources"]["Predictor"]["Properties"]
    assert function["Code"] == {"S3Bucket": "b", "S3Key": ZIP.key}
    # Same input, same bytes: this is what makes a re-deploy an empty change set.
    again = to_cloudformation(set_code_location(template, ZIP), {"Stage": "prod"}, session)
    assert template_body(plain) == template_body(again)


def test_an_invalid_sam_template_is_one_line(template: dict) -> None:
    template["Resources"]["Predictor"]["Properties"]["Events"] = {"Bad": {"Type": "NoSuchEvent"}}
    session = boto3.Session(region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    with pytest.raises(MlpackError, match="the SAM template is invalid") as failed:
        to_cloudformation(set_code_location(template, ZIP), {"Stage": "prod"}, session)
    assert "\n" not in failed.value.one_line()


def test_templates_that_cannot_deploy_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MlpackError, match="no CloudFormation/SAM template"):
        load_template(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources:\n  A: [unclosed\n")
    with pytest.raises(MlpackError, match="is not a valid template"):
        load_template(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("Resources:\n  Topic: {Type: AWS::SNS::Topic}\n")
    with pytest.raises(MlpackError, match="defines no Lambda function"):
        set_code_location(load_template(empty), ZIP)
