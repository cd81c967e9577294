"""Roll an artifact out with AWS IoT Greengrass v2 (boto3); the rollout's only AWS-talking module.

1. Publish the artifact's components (iac/greengrass/recipe.yaml and agent-recipe.yaml)
   as new component versions. With a bucket, the device bundle (manifest, model, Bento,
   agent config) is uploaded to S3 and attached to the model component, so every device
   holds the exact files of the version it runs (Greengrass checks their digest).
2. Create a deployment of both to a thing group from iac/greengrass/deployment.yaml:
   an exponential job rollout, abort criteria on failure percentages, timeouts, and
   rollback of failed devices (failureHandlingPolicy ROLLBACK); options override them.
3. Follow the deployment's IoT job until every device in the group has finished, or the
   job was cancelled by the abort criteria.

Credentials, region and endpoints resolve as for the AWS CLI (`mlpack.deploy.aws`).
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..deploy.aws import Aws, AwsError, aws_errors
from ..errors import InputError, MlpackError
from .release import Release, bundle_parts, read_release

RECIPES = ("iac/greengrass/agent-recipe.yaml", "iac/greengrass/recipe.yaml")  # agent first: a dependency
DEPLOYMENT = "iac/greengrass/deployment.yaml"
# Job counts that mean a device has finished its part of the deployment.
FINISHED = ("numberOfSucceededThings", "numberOfFailedThings", "numberOfRejectedThings",
            "numberOfTimedOutThings", "numberOfCanceledThings", "numberOfRemovedThings")
PENDING = ("numberOfQueuedThings", "numberOfInProgressThings")


@dataclass
class RolloutPolicy:
    """Overrides of the generated deployment's rollout settings (None keeps the generated value)."""

    base_rate_per_minute: int | None = None
    increment_factor: float | None = None
    increase_after_succeeded: int | None = None
    maximum_per_minute: int | None = None
    abort_failure_percent: float | None = None
    abort_min_executed: int | None = None
    in_progress_timeout_minutes: int | None = None

    def apply(self, doc: dict[str, Any]) -> None:
        job = doc.setdefault("iotJobConfiguration", {})
        rollout = job.setdefault("jobExecutionsRolloutConfig", {})
        rate = rollout.setdefault("exponentialRate", {"baseRatePerMinute": 1, "incrementFactor": 2.0,
                                                      "rateIncreaseCriteria": {"numberOfSucceededThings": 1}})
        if self.base_rate_per_minute is not None:
            rate["baseRatePerMinute"] = self.base_rate_per_minute
        if self.increment_factor is not None:
            rate["incrementFactor"] = self.increment_factor
        if self.increase_after_succeeded is not None:
            rate["rateIncreaseCriteria"] = {"numberOfSucceededThings": self.increase_after_succeeded}
        if self.maximum_per_minute is not None:
            rollout["maximumPerMinute"] = self.maximum_per_minute
        criteria = job.setdefault("abortConfig", {}).setdefault("criteriaList", [])
        if not criteria and self.abort_failure_percent is not None:
            criteria.append({"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 0,
                             "minNumberOfExecutedThings": 1})
        for criterion in criteria:
            if self.abort_failure_percent is not None:
                criterion["thresholdPercentage"] = self.abort_failure_percent
            if self.abort_min_executed is not None:
                criterion["minNumberOfExecutedThings"] = self.abort_min_executed
        if self.in_progress_timeout_minutes is not None:
            job.setdefault("timeoutConfig", {})["inProgressTimeoutInMinutes"] = self.in_progress_timeout_minutes


@dataclass
class Component:
    name: str
    version: str
    arn: str


@dataclass
class DeploymentOutcome:
    deployment_id: str
    job_id: str
    status: str  # the IoT job's status: IN_PROGRESS, COMPLETED, CANCELED, ...
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(k, 0) for k in FINISHED if k not in ("numberOfSucceededThings",
                                                                        "numberOfRemovedThings"))

    @property
    def succeeded(self) -> int:
        return self.counts.get("numberOfSucceededThings", 0)

    @property
    def pending(self) -> int:
        return sum(self.counts.get(k, 0) for k in PENDING)


@dataclass
class DeviceStatus:
    thing: str
    health: str  # the core device's status: HEALTHY or UNHEALTHY
    version: str | None  # the model component's installed version
    lifecycle: str | None  # RUNNING, ERRORED, BROKEN, ...


def read_recipe(artifact: Path, relative: str) -> dict[str, Any]:
    path = artifact / relative
    if not path.is_file():
        raise InputError(f"{artifact.name} has no {relative}",
                         "build it for a target whose IaC includes greengrass (arm-edge), or run `mlpack iac`")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_zip_bundle(release: Release, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in bundle_parts(release.artifact):
            path = release.artifact / part
            for file in sorted([path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())):
                if "__pycache__" not in file.parts:
                    zf.write(file, file.relative_to(release.artifact).as_posix())
    return dest


def _runs(recipe: dict[str, Any]) -> list[Any]:
    """What a component version does on a device: its lifecycles and container images
    (Greengrass adds digests and defaults to a stored recipe, so whole recipes differ)."""
    return [(m.get("Platform"), m.get("Lifecycle")) for m in recipe.get("Manifests", [])] + image_uris(recipe)


def image_uris(recipe: dict[str, Any]) -> list[str]:
    return [a["URI"] for m in recipe.get("Manifests", []) for a in m.get("Artifacts", [])
            if str(a.get("URI", "")).startswith("docker:")]


class Greengrass:
    def __init__(self, aws: Aws, log: Callable[[str], None] = lambda _: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.aws = aws
        self.greengrass = aws.client("greengrassv2")
        self.iot = aws.client("iot")
        self.s3 = aws.client("s3")
        self.log, self.sleep = log, sleep

    # -- fleet -----------------------------------------------------------------------------

    def thing_group_arn(self, fleet: str) -> str:
        name = fleet.removeprefix("greengrass:").lstrip("/")
        if name.startswith("arn:"):
            return name
        with aws_errors(f"finding the thing group {name!r}"):
            return self.iot.describe_thing_group(thingGroupName=name)["thingGroupArn"]

    # -- components ------------------------------------------------------------------------

    def upload_bundle(self, release: Release, recipe: dict[str, Any], bucket: str, prefix: str, workdir: Path) -> str:
        bundle = write_zip_bundle(release, workdir / f"{release.name}.zip")
        key = f"{prefix.strip('/')}/{recipe['ComponentName']}/{recipe['ComponentVersion']}/{bundle.name}".lstrip("/")
        with aws_errors(f"uploading the device bundle to s3://{bucket}/{key}"):
            self.s3.upload_file(str(bundle), bucket, key)
        uri = f"s3://{bucket}/{key}"
        for manifest in recipe.get("Manifests", []):
            manifest.setdefault("Artifacts", []).append(
                {"URI": uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER", "Execute": "NONE"}})
        self.log(f"  uploaded {bundle.stat().st_size / 1024:.0f} KB to {uri}")
        return uri

    def publish(self, recipe: dict[str, Any], before_create: Callable[[dict[str, Any]], Any] | None = None,
                timeout_s: float = 300.0) -> Component:
        """Create the component version, or reuse an existing one made from the same recipe;
        wait until it is deployable. `before_create` runs only when a version is created
        (it uploads the bundle: an existing version's S3 object is never overwritten)."""
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        existing = self._existing_recipe(name, version)
        if existing is not None:
            if _runs(existing) != _runs(recipe):
                raise MlpackError(
                    f"component {name} {version} already exists with a different recipe",
                    "the version comes from the model's sha256: delete that component version or rebuild "
                    "with the current mlpack, then roll out again",
                )
            self.log(f"  {name} {version} exists already; reusing it")
            return Component(name, version, self._component_version_arn(name, version))
        if before_create is not None:
            before_create(recipe)
        with aws_errors(f"creating component {name} {version}"):
            created = self.greengrass.create_component_version(
                inlineRecipe=json.dumps(recipe).encode(), tags={"mlpack:component": name})
        arn = created["arn"]
        deadline = time.monotonic() + timeout_s
        while True:
            with aws_errors(f"checking component {name} {version}"):
                status = self.greengrass.describe_component(arn=arn)["status"]
            state = status["componentState"]
            if state == "DEPLOYABLE":
                self.log(f"  {name} {version}: deployable")
                return Component(name, version, arn)
            if state == "FAILED":
                errors = "; ".join(f"{k}: {v}" for k, v in (status.get("errors") or {}).items())
                raise MlpackError(f"Greengrass rejected component {name} {version}: {status.get('message', '')} {errors}".strip(),
                                  "check the recipe's artifacts (S3 object access, image URI) and rebuild")
            if time.monotonic() > deadline:
                raise MlpackError(f"component {name} {version} is still {state} after {timeout_s:.0f} s",
                                  "check it with `aws greengrassv2 describe-component`, then run the rollout again")
            self.sleep(2.0)

    def _existing_recipe(self, name: str, version: str) -> dict[str, Any] | None:
        arn = self._component_version_arn(name, version)
        try:
            with aws_errors(f"looking up component {name} {version}"):
                found = self.greengrass.get_component(arn=arn, recipeOutputFormat="JSON")
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                return None
            raise
        return json.loads(found["recipe"])

    def _component_version_arn(self, name: str, version: str) -> str:
        return f"arn:{self.aws.partition}:greengrass:{self.aws.region}:{self.aws.account}:components:{name}:versions:{version}"

    # -- deployment ------------------------------------------------------------------------

    def deploy(self, target_arn: str, document: dict[str, Any]) -> tuple[str, str]:
        doc = {k: v for k, v in document.items() if k != "targetArn"}
        with aws_errors(f"creating the deployment to {target_arn}"):
            created = self.greengrass.create_deployment(targetArn=target_arn, **doc)
        return created["deploymentId"], created.get("iotJobId", "")

    def follow(self, deployment_id: str, job_id: str, timeout_s: float, poll_s: float = 10.0) -> DeploymentOutcome:
        """Report the job's progress until every device finished, the job stopped, or time ran out."""
        deadline = time.monotonic() + timeout_s
        last = None
        outcome = DeploymentOutcome(deployment_id, job_id, "IN_PROGRESS")
        while True:
            if not job_id:
                with aws_errors(f"reading deployment {deployment_id}"):
                    job_id = self.greengrass.get_deployment(deploymentId=deployment_id).get("iotJobId", "")
            if job_id:
                with aws_errors(f"reading the deployment's IoT job {job_id}"):
                    job = self.iot.describe_job(jobId=job_id)["job"]
                counts = {k: int(v) for k, v in (job.get("jobProcessDetails") or {}).items() if isinstance(v, int)}
                outcome = DeploymentOutcome(deployment_id, job_id, job.get("status", "UNKNOWN"), counts)
                line = (f"  {outcome.status}: {outcome.succeeded} succeeded, {outcome.failed} failed, "
                        f"{outcome.pending} pending")
                if line != last:
                    self.log(line)
                    last = line
                # A thing-group deployment is a continuous job: it stays IN_PROGRESS for devices
                # that join later, so "done" means nothing is queued or running now.
                if outcome.status in ("CANCELED", "COMPLETED", "DELETION_IN_PROGRESS") or (
                    outcome.pending == 0 and (outcome.succeeded or outcome.failed)
                ):
                    return outcome
            if time.monotonic() > deadline:
                return outcome
            self.sleep(poll_s)

    # -- status ----------------------------------------------------------------------------

    def fleet_status(self, fleet: str, component: str | None = None) -> list[DeviceStatus]:
        """Per core device in the group: its health and the installed mlpack model component."""
        group = self.thing_group_arn(fleet)
        devices = []
        with aws_errors(f"listing the core devices of {group}"):
            pages = self.greengrass.get_paginator("list_core_devices").paginate(thingGroupArn=group)
            cores = [core for page in pages for core in page.get("coreDevices", [])]
        for core in cores:
            thing = core["coreDeviceThingName"]
            with aws_errors(f"listing the components on {thing}"):
                pages = self.greengrass.get_paginator("list_installed_components").paginate(coreDeviceThingName=thing)
                installed = [c for page in pages for c in page.get("installedComponents", [])]
            ours = [c for c in installed if (c["componentName"] == component if component else
                    c["componentName"].startswith("dev.mlpack.") and not c["componentName"].endswith(".agent"))]
            devices.append(DeviceStatus(thing, core.get("status", "UNKNOWN"),
                                        ours[0].get("componentVersion") if ours else None,
                                        ours[0].get("lifecycleState") if ours else None))
        return devices


def rollout(
    artifact: Path,
    fleet: str,
    aws: Aws,
    *,
    bucket: str | None = None,
    prefix: str = "mlpack",
    policy: RolloutPolicy | None = None,
    wait_s: float = 0.0,
    workdir: Path,
    log: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    key: Path | None = None,
) -> DeploymentOutcome:
    """Publish the components and deploy them to the thing group; follow for up to wait_s.
    With `key` (or $MLPACK_VERIFY_KEY) the artifact's signature must verify first."""
    release = read_release(artifact, key)
    recipes = [read_recipe(release.artifact, relative) for relative in RECIPES]
    document = read_recipe(release.artifact, DEPLOYMENT)
    (policy or RolloutPolicy()).apply(document)
    gg = Greengrass(aws, log, sleep)
    target = gg.thing_group_arn(fleet)
    for recipe in recipes:
        for uri in image_uris(recipe):
            if "@sha256:" not in uri:
                log(f"  note: {uri} names the image by tag; `mlpack push` then `mlpack iac` pin it by digest")
    log(f"Publishing {len(recipes)} Greengrass components")
    for recipe in recipes:
        upload = None
        if bucket and recipe is recipes[-1]:  # the model component carries the device bundle
            upload = lambda r: gg.upload_bundle(release, r, bucket, prefix, workdir)  # noqa: E731
        gg.publish(recipe, upload)
    deployment_id, job_id = gg.deploy(target, document)
    log(f"Deployment {deployment_id} to {target} (IoT job {job_id or 'pending'})")
    if wait_s <= 0:
        return DeploymentOutcome(deployment_id, job_id, "IN_PROGRESS")
    return gg.follow(deployment_id, job_id, wait_s)
