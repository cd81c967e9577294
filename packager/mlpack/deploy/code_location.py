"""Where the function's code lives before CloudFormation points Lambda at it.

A zip goes to an S3 bucket of this account and region, under a key named by its
sha256: uploading the same artifact again finds the object already there, and the
template (hence the change set) stays byte-for-byte the same. An image is referenced
by the digest that `mlpack push` recorded, in an ECR repository that deploy ensures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import MlpackError
from ..manifest import Manifest
from ..model.info import sha256_file
from .aws import Aws, AwsError, aws_errors
from .template import CodeLocation


def default_bucket(aws: Aws) -> str:
    return f"mlpack-deploy-{aws.account}-{aws.region}"


def ensure_bucket(aws: Aws, bucket: str, log: Callable[[str], None]) -> None:
    """The bucket exists and belongs to this account; created private and encrypted if not."""
    s3 = aws.client("s3")
    try:
        with aws_errors(f"checking S3 bucket {bucket}"):
            s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=aws.account)
        return
    except AwsError as exc:
        if exc.code in {"403", "AccessDenied"}:
            raise MlpackError(f"S3 bucket {bucket} exists but is not this account's ({aws.account})",
                              "pass --bucket with a bucket of your own") from exc
        if exc.code not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    log(f"  creating S3 bucket {bucket} (private, encrypted)")
    location = {} if aws.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": aws.region}}
    with aws_errors(f"creating S3 bucket {bucket}"):
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def upload_zip(aws: Aws, bucket: str, artifact: str, zip_path: Path, log: Callable[[str], None]) -> CodeLocation:
    """Put the zip at a content-addressed key, once."""
    if not zip_path.is_file():
        raise MlpackError(f"{zip_path} is missing", "rebuild the artifact with `mlpack build --target aws-lambda`")
    key = f"mlpack/{artifact}/function-{sha256_file(zip_path)}.zip"
    s3 = aws.client("s3")
    try:
        with aws_errors(f"checking s3://{bucket}/{key}"):
            s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=aws.account)
        log(f"  s3://{bucket}/{key} is already uploaded")
    except AwsError as exc:
        if exc.code not in {"404", "NoSuchKey", "NotFound"}:
            raise
        log(f"  uploading {zip_path.name} ({zip_path.stat().st_size / 2**20:.1f} MB) to s3://{bucket}/{key}")
        with aws_errors(f"uploading {zip_path.name} to s3://{bucket}"):
            s3.upload_file(str(zip_path), bucket, key, ExtraArgs={"ExpectedBucketOwner": aws.account})
    return CodeLocation(bucket=bucket, key=key)


def upload_template(aws: Aws, bucket: str, artifact: str, body: str, sha256: str) -> str:
    """Templates over CloudFormation's inline limit are read from S3."""
    key = f"mlpack/{artifact}/template-{sha256}.json"
    with aws_errors(f"uploading the template to s3://{bucket}"):
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode(),
                                    ExpectedBucketOwner=aws.account)
    host = "amazonaws.com.cn" if aws.partition == "aws-cn" else "amazonaws.com"
    return f"https://{bucket}.s3.{aws.region}.{host}/{key}"


def registry(aws: Aws) -> str:
    """This account's ECR registry in this region."""
    host = "amazonaws.com.cn" if aws.partition == "aws-cn" else "amazonaws.com"
    return f"{aws.account}.dkr.ecr.{aws.region}.{host}"


def ensure_repository(aws: Aws, repository: str, log: Callable[[str], None]) -> str:
    """The ECR repository exists (immutable tags, scan on push); returns its URI."""
    ecr = aws.client("ecr")
    try:
        with aws_errors(f"checking ECR repository {repository}"):
            found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        return found["repositoryUri"]
    except AwsError as exc:
        if exc.code != "RepositoryNotFoundException":
            raise
    log(f"  creating ECR repository {repository}")
    with aws_errors(f"creating ECR repository {repository}"):
        created = ecr.create_repository(
            repositoryName=repository, imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
        )
    return created["repository"]["repositoryUri"]


def _split_registry(reference: str) -> tuple[str | None, str]:
    """("registry host", "repository[@digest]"); like docker, the first part is a registry
    only when it has a dot, a port, or is localhost."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, reference


def pushed_image(aws: Aws, manifest: Manifest, log: Callable[[str], None]) -> CodeLocation:
    """The image `mlpack push` recorded, pinned by digest, checked to be in this account's ECR.

    Lambda runs images only from ECR in the function's own region; before the first push
    the repository is created here, so that the push has somewhere to go."""
    image = manifest.image
    digest = image.digest
    host, repository = _split_registry((image.ref or image.repository).split("@")[0])
    if not repository:
        raise MlpackError("the manifest names no image repository", "rebuild the artifact")
    ours = registry(aws)
    if host is not None and host != ours:
        raise MlpackError(f"the image was pushed to {host}, but Lambda runs images only from this account's "
                          f"ECR in {aws.region} ({ours})", f"push it with `mlpack push ARTIFACT --to {ours}/{repository}`")
    uri = ensure_repository(aws, repository, log)
    if not digest:
        raise MlpackError(
            f"the image of {manifest.artifact} has not been pushed (no image.digest in manifest.json)",
            f"`aws ecr get-login-password | buildah login --username AWS --password-stdin {ours}`, then "
            f"`mlpack push ARTIFACT --to {uri}`; or deploy the zip with --package zip")
    try:
        with aws_errors(f"looking up {repository}@{digest} in ECR"):
            aws.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    except AwsError as exc:
        if exc.code != "ImageNotFoundException":
            raise
        raise MlpackError(f"image {digest} is not in ECR repository {uri}",
                          f"push the artifact's image with `mlpack push ARTIFACT --to {uri}`") from exc
    return CodeLocation(image_uri=f"{uri}@{digest}")
