"""The one module that talks to AWS. Everything else asks it for clients.

Region, profile and credentials resolve as boto3 resolves them (botocore's resolver):
--region/--profile, then AWS_DEFAULT_REGION, AWS_PROFILE, the AWS_ACCESS_KEY_ID family,
~/.aws/config and ~/.aws/credentials, SSO, credential_process, container and instance
roles. botocore does not read AWS_REGION (other AWS SDKs and Lambda's own environment
use it): a region given only there is named in the error, not used.
AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) redirect every client, which is how
tests point mlpack at a local moto server.

Every AWS failure leaves this module as an MlpackError of one line.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.parsers import ResponseParserError

from ..errors import MlpackError

CREDENTIALS_HINT = (
    "configure credentials as for the AWS CLI: `aws configure`, `aws sso login`, "
    "AWS_PROFILE or --profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
REGION_HINT = "pass --region, set AWS_DEFAULT_REGION, or set `region` in the profile (`aws configure`)"

# Error codes that mean "these credentials are not accepted", as opposed to "not allowed".
_BAD_CREDENTIAL_CODES = {
    "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
    "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "AuthFailure",
    "InvalidSignatureException", "IncompleteSignature",
}


class AwsError(MlpackError):
    """An AWS API error, keeping the service's code for callers that expect some codes."""

    def __init__(self, message: str, hint: str | None = None, code: str = "", aws_message: str = "") -> None:
        super().__init__(message, hint)
        self.code, self.aws_message = code, aws_message


@dataclass
class Aws:
    """A resolved session: where we deploy and as whom."""

    session: boto3.Session
    region: str
    account: str
    caller_arn: str

    def client(self, service: str) -> Any:
        return self.session.client(service)

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)


def connect(region: str | None = None, profile: str | None = None) -> Aws:
    """Resolve the session like the AWS CLI and prove the credentials work (STS)."""
    try:
        session = boto3.Session(region_name=region, profile_name=profile)
    except ProfileNotFound as exc:
        raise MlpackError(f"AWS profile {exc.kwargs.get('profile', profile)!r} is not configured",
                          "run `aws configure list-profiles` and pass an existing --profile") from exc
    if not session.region_name:
        raise no_region()
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. a failing credential_process or SSO token
        raise MlpackError(f"AWS credentials could not be loaded: {exc}", CREDENTIALS_HINT) from exc
    if credentials is None:
        raise MlpackError("no AWS credentials found", CREDENTIALS_HINT)
    with aws_errors("checking the AWS credentials (sts get-caller-identity)"):
        identity = session.client("sts").get_caller_identity()
    return Aws(session=session, region=session.region_name, account=identity["Account"],
               caller_arn=identity["Arn"])


def no_region(prefix: str = "") -> MlpackError:
    """No region resolved. AWS_REGION alone is a common slip (other AWS SDKs read it, boto3
    does not): name it, and the variable boto3 reads."""
    other = os.environ.get("AWS_REGION", "").strip()
    if other:
        return MlpackError(f"{prefix}no AWS region configured: AWS_REGION={other} is set, but boto3 reads "
                           "AWS_DEFAULT_REGION", f"pass --region {other}, or export AWS_DEFAULT_REGION={other}")
    return MlpackError(f"{prefix}no AWS region configured", REGION_HINT)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def error_message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", "") or str(exc)


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn any botocore failure inside the block into one MlpackError line."""
    try:
        yield
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if code in _BAD_CREDENTIAL_CODES:
            raise AwsError(f"{action}: AWS rejected the credentials ({code}: {message})",
                           CREDENTIALS_HINT, code, message) from exc
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
            raise AwsError(f"{action}: access denied ({message})",
                           "grant this identity the permission named above, or use another --profile",
                           code, message) from exc
        raise AwsError(f"{action}: {code or 'error'}: {message}", None, code, message) from exc
    except EndpointConnectionError as exc:
        raise MlpackError(f"{action}: cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}",
                          "check the network and --region, or AWS_ENDPOINT_URL if you set one") from exc
    except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, SSOError,
            TokenRetrievalError) as exc:  # credentials that load lazily: SSO, credential_process
        raise MlpackError(f"{action}: {exc}", CREDENTIALS_HINT) from exc
    except NoRegionError as exc:
        raise no_region(f"{action}: ") from exc
    except BotoCoreError as exc:
        raise MlpackError(f"{action}: {exc}") from exc
    except ResponseParserError as exc:  # an HTML error page from a proxy or a broken endpoint
        raise MlpackError(f"{action}: the endpoint answered with something that is not an AWS response",
                          "check AWS_ENDPOINT_URL, proxies, and the service's health") from exc
