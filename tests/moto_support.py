"""moto in server mode on 127.0.0.1, and the demo aws-lambda artifact, for the tests of
`mlpack deploy` (tests/test_deploy.py, tests/test_deploy_signatures.py, tests/test_readme.py).

boto3 honours AWS_ENDPOINT_URL natively, so the code under test is the code a user runs;
only the endpoint differs. A test module uses the fixtures by importing them:

    from .moto_support import MOTO_SERVER, artifact, aws_env, built, endpoint, server, stack_name  # noqa: F401
    pytestmark = MOTO_SERVER
"""

from __future__ import annotations

import shutil
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest

from mlpack.build import BuildResult
from mlpack.deploy import DeployRequest, deploy
from mlpack.progress import Progress

from .agent_harness import free_port
from .manifests import edit_json
from .pyramid import heavy

MOTO_SERVER = [
    pytest.mark.requires_tool("moto.server", module=True, hint="moto[server], a test dependency (make setup)"),
    # moto's own notices about what its CloudFormation skips (see docs/deploy.md).
    pytest.mark.filterwarnings("ignore:Tried to parse AWS..Lambda..Url:UserWarning"),
    pytest.mark.filterwarnings("ignore:Unable to delete Broken:UserWarning"),
]

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account

# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
@heavy
def server() -> Iterator[str]:
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with _moto_kms_cloudformation_tags():
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def endpoint(server: str) -> str:
    """A clean account for each test: the template names its function and log group."""
    urllib.request.urlopen(urllib.request.Request(f"{server}/moto-api/reset", method="POST")).close()
    return server


@contextmanager
def _moto_kms_cloudformation_tags() -> Iterator[None]:
    """A moto bug: CloudFormation gives AWS::KMS::Key tags as Key/Value (the resource's
    schema), moto's KMS tagger reads TagKey/TagValue and fails with KeyError."""
    from moto.kms.models import Key

    original = Key.__dict__["create_from_cloudformation_json"]

    def create(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        props = cloudformation_json.get("Properties", {})
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props.get("Tags", [])]
        return original.__func__(cls, resource_name, cloudformation_json, *args, **kwargs)

    Key.create_from_cloudformation_json = classmethod(create)
    try:
        yield
    finally:
        Key.create_from_cloudformation_json = original


@pytest.fixture
def aws_env(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and region from the environment only, as the AWS CLI would read them."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMLPACKTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return endpoint


@pytest.fixture(scope="module")
@heavy
def built(demo_artifact: Callable[[str], BuildResult]) -> Path:
    """The demo aws-lambda artifact, built once; tests deploy copies of it."""
    path = demo_artifact("aws-lambda").path
    assert (path / "iac/sam/template.yaml").is_file(), "the aws-lambda build wrote no iac/sam/template.yaml"
    return path


@pytest.fixture
def artifact(built: Path, tmp_path: Path) -> Path:
    """A private copy: deploy records itself in history.json."""
    copy = tmp_path / built.name
    shutil.copytree(built, copy)
    return copy


@pytest.fixture
def stack_name(request: pytest.FixtureRequest) -> str:
    return "t-" + request.node.name.replace("_", "-")[:100]


def write_template(root: Path, text: str) -> None:
    (root / "iac/sam").mkdir(parents=True, exist_ok=True)
    (root / "iac/sam/template.yaml").write_text(text)
    refresh_manifest(root)


def refresh_manifest(root: Path) -> None:
    """What a rebuild does to the file list, so that deploy's integrity check passes."""
    edit_json(root, lambda m: None, rehash=True)


def run_deploy(artifact: Path, stack: str, **options: Any):
    return deploy(DeployRequest(artifact=artifact, stack_name=stack, poll_seconds=0.05, timeout_seconds=60,
                                **options), Progress(quiet=True))


def aws_client(service: str) -> Any:
    return boto3.client(service)  # endpoint, region and keys from aws_env


def stack_info(name: str) -> dict[str, Any]:
    return aws_client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]


def code_sha(function_arn: str) -> str:
    return aws_client("lambda").get_function(FunctionName=function_arn.rsplit(":", 1)[1])["Configuration"]["CodeSha256"]
