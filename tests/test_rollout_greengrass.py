"""`mlpack rollout --fleet greengrass:GROUP`: the boto3 calls, checked against botocore's
service models (Stubber validates every request's parameters and every stubbed response),
with S3 and IoT (thing groups, jobs) served by moto."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber

from mlpack.deploy.aws import Aws
from mlpack.errors import MlpackError
from mlpack.rollout import greengrass
from mlpack.rollout.greengrass import Greengrass, RolloutPolicy
from .pyramid import heavy

pytestmark = pytest.mark.requires_tool("moto", module=True, hint="moto, a test dependency (make setup)")

REGION, ACCOUNT = "us-east-1", "123456789012"
GROUP, BUCKET = "edge-fleet", "mlpack-artifacts"


class StubbedAws(Aws):
    """Moto for S3 and IoT; one Stubber-wrapped client for Greengrass v2 (moto has no v2)."""

    def __init__(self, session: boto3.Session) -> None:
        super().__init__(session=session, region=REGION, account=ACCOUNT, caller_arn=f"arn:aws:iam::{ACCOUNT}:user/t")
        self.gg = session.client("greengrassv2")
        self.stub = Stubber(self.gg)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.gg.meta.events.register("before-parameter-build.greengrassv2.*", self._capture)

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.sent.append((model.name, dict(params)))

    def client(self, service: str) -> Any:
        return self.gg if service == "greengrassv2" else self.session.client(service)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import moto

    with moto.mock_aws():
        session = boto3.Session(region_name=REGION)
        session.client("s3").create_bucket(Bucket=BUCKET)
        session.client("iot").create_thing_group(thingGroupName=GROUP)
        yield StubbedAws(session)


@pytest.fixture(scope="module")
@heavy
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlpack.build import BuildRequest, build
    from mlpack.progress import Progress

    from .models import linear_model

    base = tmp_path_factory.mktemp("greengrass")
    model = linear_model(base / "sensor.onnx", features=8, outputs=2)
    return build(BuildRequest(model=model, target="arm-edge", out=base), Progress(quiet=True)).path


def _recipe(artifact: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((artifact / "iac/greengrass" / name).read_text())


def _component_response(recipe: dict[str, Any], state: str) -> dict[str, Any]:
    arn = (f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{recipe['ComponentName']}"
           f":versions:{recipe['ComponentVersion']}")
    return {"arn": arn, "componentName": recipe["ComponentName"], "componentVersion": recipe["ComponentVersion"],
            "creationTimestamp": "2026-01-01T00:00:00Z", "status": {"componentState": state}}


def _not_found(aws: StubbedAws, recipe: dict[str, Any]) -> None:
    aws.stub.add_client_error("get_component", service_error_code="ResourceNotFoundException",
                              service_message="not found", http_status_code=404,
                              expected_params={"arn": _component_response(recipe, "")["arn"], "recipeOutputFormat": "JSON"})


def test_publishes_both_components_and_deploys_to_the_thing_group_with_rollout_abort_and_timeouts(
    aws: StubbedAws, artifact: Path, tmp_path: Path
) -> None:
    agent, model = _recipe(artifact, "agent-recipe.yaml"), _recipe(artifact, "recipe.yaml")
    deployment = yaml.safe_load((artifact / "iac/greengrass/deployment.yaml").read_text())
    group_arn = aws.session.client("iot").describe_thing_group(thingGroupName=GROUP)["thingGroupArn"]
    job_id = "gg-deployment-job"
    aws.session.client("iot").create_job(jobId=job_id, targets=[group_arn], document="{}")
    stub = aws.stub
    # The agent first (the model component depends on it); the first one takes a poll.
    _not_found(aws, agent)
    stub.add_response("create_component_version", _component_response(agent, "REQUESTED"),
                      {"inlineRecipe": ANY, "tags": ANY})
    stub.add_response("describe_component", {"status": {"componentState": "INITIATED"}},
                      {"arn": _component_response(agent, "")["arn"]})
    stub.add_response("describe_component", {"status": {"componentState": "DEPLOYABLE"}},
                      {"arn": _component_response(agent, "")["arn"]})
    _not_found(aws, model)
    stub.add_response("create_component_version", _component_response(model, "REQUESTED"),
                      {"inlineRecipe": ANY, "tags": ANY})
    stub.add_response("describe_component", {"status": {"componentState": "DEPLOYABLE"}},
                      {"arn": _component_response(model, "")["arn"]})
    expected_job = {
        "jobExecutionsRolloutConfig": {
            "exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 1.5,
                                "rateIncreaseCriteria": {"numberOfSucceededThings": 3}},
            "maximumPerMinute": deployment["iotJobConfiguration"]["jobExecutionsRolloutConfig"]["maximumPerMinute"],
        },
        "abortConfig": {"criteriaList": [
            {**c, "thresholdPercentage": 5.0, "minNumberOfExecutedThings": 2}
            for c in deployment["iotJobConfiguration"]["abortConfig"]["criteriaList"]
        ]},
        "timeoutConfig": {"inProgressTimeoutInMinutes": 15},
    }
    stub.add_response(
        "create_deployment", {"deploymentId": "d-1", "iotJobId": job_id, "iotJobArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:job/{job_id}"},
        {"targetArn": group_arn, "deploymentName": deployment["deploymentName"], "components": deployment["components"],
         "deploymentPolicies": deployment["deploymentPolicies"], "iotJobConfiguration": expected_job,
         "tags": deployment["tags"]},
    )
    cancelled = []

    def sleep(seconds: float) -> None:
        # Time passes; on the first follow-up poll the job's abort criteria fire (moto's job).
        if any(op == "CreateDeployment" for op, _ in aws.sent) and not cancelled:
            aws.session.client("iot").cancel_job(jobId=job_id, reasonCode="ABORTED", comment="failure threshold")
            cancelled.append(seconds)

    lines: list[str] = []
    policy = RolloutPolicy(base_rate_per_minute=5, increment_factor=1.5, increase_after_succeeded=3,
                           abort_failure_percent=5.0, abort_min_executed=2, in_progress_timeout_minutes=15)
    with stub:
        outcome = greengrass.rollout(artifact, f"greengrass:{GROUP}", aws, bucket=BUCKET, policy=policy,
                                     wait_s=60, workdir=tmp_path, log=lines.append, sleep=sleep)
        stub.assert_no_pending_responses()

    assert outcome.deployment_id == "d-1" and outcome.job_id == job_id
    assert outcome.status == "CANCELED"  # followed moto's job until the abort
    # The recipes sent are the artifact's, the model's with the bundle uploaded to S3 attached.
    recipes = [json.loads(p["inlineRecipe"]) for op, p in aws.sent if op == "CreateComponentVersion"]
    assert [r["ComponentName"] for r in recipes] == [agent["ComponentName"], model["ComponentName"]]
    assert recipes[0] == agent
    bundle_uri = recipes[1]["Manifests"][0]["Artifacts"][-1]["URI"]
    assert recipes[1]["Manifests"][0]["Artifacts"][:-1] == model["Manifests"][0]["Artifacts"]
    assert bundle_uri.startswith(f"s3://{BUCKET}/mlpack/{model['ComponentName']}/{model['ComponentVersion']}/")
    key = bundle_uri.removeprefix(f"s3://{BUCKET}/")
    body = aws.session.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "manifest.json" in names and "model/model.onnx" in names and "agent/agent.json" in names
    assert any("CANCELED" in line for line in lines)


def test_an_existing_component_version_from_the_same_recipe_is_reused_without_upload(
    aws: StubbedAws, artifact: Path
) -> None:
    model = _recipe(artifact, "recipe.yaml")
    stored = json.loads(json.dumps(model))  # as Greengrass keeps it: digests and defaults added
    stored["ComponentType"] = "aws.greengrass.generic"
    for manifest in stored["Manifests"]:
        manifest["Artifacts"] = [{**a, "Algorithm": "SHA-256", "Digest": "abc="} for a in manifest["Artifacts"]]
    aws.stub.add_response("get_component", {"recipeOutputFormat": "JSON", "recipe": json.dumps(stored).encode()},
                          {"arn": _component_response(model, "")["arn"], "recipeOutputFormat": "JSON"})
    uploads: list[dict] = []
    with aws.stub:
        component = Greengrass(aws).publish(model, before_create=uploads.append)
        aws.stub.assert_no_pending_responses()  # nothing created
    assert component.arn == _component_response(model, "")["arn"]
    assert uploads == []  # an existing version's S3 object is never overwritten


def test_an_existing_component_version_with_another_recipe_is_refused(aws: StubbedAws, artifact: Path) -> None:
    model = _recipe(artifact, "recipe.yaml")
    other = json.loads(json.dumps(model))
    other["Manifests"][0]["Lifecycle"]["Run"]["Script"] = "exec something-else"
    aws.stub.add_response("get_component", {"recipeOutputFormat": "JSON", "recipe": json.dumps(other).encode()})
    with aws.stub, pytest.raises(MlpackError, match="already exists with a different recipe"):
        Greengrass(aws).publish(model)


def test_a_rejected_component_is_one_clear_error(aws: StubbedAws, artifact: Path) -> None:
    model = _recipe(artifact, "recipe.yaml")
    _not_found(aws, model)
    aws.stub.add_response("create_component_version", _component_response(model, "REQUESTED"))
    aws.stub.add_response("describe_component", {"status": {
        "componentState": "FAILED", "message": "artifact not accessible", "errors": {"s3://x/y": "AccessDenied"}}})
    with aws.stub, pytest.raises(MlpackError, match="rejected component .*artifact not accessible"):
        Greengrass(aws, sleep=lambda _: None).publish(model)


def test_an_unknown_thing_group_is_one_clear_error(aws: StubbedAws) -> None:
    with pytest.raises(MlpackError, match="finding the thing group 'nowhere'"):
        Greengrass(aws).thing_group_arn("greengrass:nowhere")


def test_status_lists_each_core_device_with_its_health_and_model_version(aws: StubbedAws) -> None:
    group_arn = aws.session.client("iot").describe_thing_group(thingGroupName=GROUP)["thingGroupArn"]
    aws.stub.add_response("list_core_devices", {"coreDevices": [
        {"coreDeviceThingName": "pi-1", "status": "HEALTHY"},
        {"coreDeviceThingName": "pi-2", "status": "UNHEALTHY"},
    ]}, {"thingGroupArn": group_arn})
    for thing, version, state in (("pi-1", "0.1.0-mabc", "RUNNING"), ("pi-2", "0.1.0-mold", "ERRORED")):
        aws.stub.add_response("list_installed_components", {"installedComponents": [
            {"componentName": "dev.mlpack.sensor-arm-edge.agent", "componentVersion": version, "lifecycleState": "RUNNING"},
            {"componentName": "dev.mlpack.sensor-arm-edge", "componentVersion": version, "lifecycleState": state},
        ]}, {"coreDeviceThingName": thing})
    with aws.stub:
        devices = Greengrass(aws).fleet_status(f"greengrass:{GROUP}")
    assert [(d.thing, d.health, d.version, d.lifecycle) for d in devices] == [
        ("pi-1", "HEALTHY", "0.1.0-mabc", "RUNNING"), ("pi-2", "UNHEALTHY", "0.1.0-mold", "ERRORED")]


def test_the_stubbed_client_rejects_requests_the_real_api_would(aws: StubbedAws) -> None:
    """The safety net under every test above: botocore validates parameters even when stubbed."""
    from botocore.exceptions import ParamValidationError

    aws.stub.add_response("create_deployment", {"deploymentId": "d-1"})
    with aws.stub, pytest.raises(ParamValidationError, match="thresholdPercentage"):
        aws.gg.create_deployment(targetArn="arn:aws:iot:us-east-1:1:thinggroup/g",
                                 iotJobConfiguration={"abortConfig": {"criteriaList": [{"failureType": "FAILED"}]}})


def test_the_cli_deploys_and_shows_status(aws: StubbedAws, artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mlpack.cli import app
    from .manifests import read_history

    monkeypatch.setattr("mlpack.deploy.aws.connect", lambda region=None, profile=None: aws)
    group_arn = aws.session.client("iot").describe_thing_group(thingGroupName=GROUP)["thingGroupArn"]
    for recipe in (_recipe(artifact, "agent-recipe.yaml"), _recipe(artifact, "recipe.yaml")):
        _not_found(aws, recipe)
        aws.stub.add_response("create_component_version", _component_response(recipe, "DEPLOYABLE"))
        aws.stub.add_response("describe_component", {"status": {"componentState": "DEPLOYABLE"}})
    aws.stub.add_response("create_deployment", {"deploymentId": "d-2", "iotJobId": "job-2"})
    aws.stub.add_response("list_core_devices", {"coreDevices": [{"coreDeviceThingName": "pi-1", "status": "HEALTHY"}]},
                          {"thingGroupArn": group_arn})
    version = _recipe(artifact, "recipe.yaml")["ComponentVersion"]
    aws.stub.add_response("list_installed_components", {"installedComponents": [
        {"componentName": _recipe(artifact, "recipe.yaml")["ComponentName"], "componentVersion": version,
         "lifecycleState": "RUNNING"}]})
    runner = CliRunner()
    with aws.stub:
        deployed = runner.invoke(app, ["rollout", str(artifact), "--fleet", f"greengrass:{GROUP}", "--wait", "0",
                                       "--abort-percent", "20"])
        shown = runner.invoke(app, ["rollout", "--status", "--fleet", f"greengrass:{GROUP}"])
        aws.stub.assert_no_pending_responses()
    assert deployed.exit_code == 0, deployed.output
    assert "deployment d-2: IN_PROGRESS" in deployed.output
    sent = dict(aws.sent)["CreateDeployment"]
    assert {c["thresholdPercentage"] for c in sent["iotJobConfiguration"]["abortConfig"]["criteriaList"]} == {20.0}
    assert read_history(artifact)["rollouts"][-1]["engine"] == "greengrass"
    assert shown.exit_code == 0, shown.output
    assert f"pi-1    {version}" in shown.output and "HEALTHY" in shown.output and "RUNNING" in shown.output
