"""`mlpack rollout ARTIFACT --fleet FLEET`: an edge artifact onto a fleet of devices.

FLEET is an Ansible inventory (file or folder) for SSH fleets, or `greengrass:GROUP`
(a thing group name or ARN) for AWS IoT Greengrass v2. `--status` shows, per device,
the version it runs and its health. `--resume` continues an Ansible rollout that was
interrupted (Ctrl-C, a control node that died) or stopped, from its first unfinished wave.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError, MlpackError
from .application import Application, command
from .options import VerifyKeyOption

GREENGRASS_PREFIX = "greengrass:"


class RolloutInterrupted(MlpackError):
    exit_code = 130  # as for any command stopped with Ctrl-C


def _is_greengrass(fleet: str) -> bool:
    return fleet.startswith(GREENGRASS_PREFIX) or fleet.startswith("arn:aws")


def rollout(
    app: Application,
    artifact: Annotated[Optional[Path], typer.Argument(
        help="An edge artifact folder from `mlpack build` (optional with --status).", show_default=False)] = None,
    fleet: Annotated[str, typer.Option(
        "--fleet", help="An Ansible inventory, or greengrass:THING_GROUP (name or ARN).")] = ...,
    status: Annotated[bool, typer.Option("--status", help="Show each device's version and health.")] = False,
    limit: Annotated[Optional[str], typer.Option(help="Ansible: only these hosts or groups (a --limit pattern).")] = None,
    waves: Annotated[str, typer.Option(help="Ansible: wave sizes, devices or shares of the fleet.")] = "1,10%,50%,100%",
    health_timeout: Annotated[float, typer.Option(
        help="Ansible: seconds a device has to serve and report the new version.")] = 60.0,
    max_unreachable: Annotated[str, typer.Option(
        help="Ansible: devices per wave that may be unreachable (a count, or a share of the wave like 10%) "
             "before the rollout stops; they stay on their version.")] = "0",
    confirm_timeout: Annotated[Optional[float], typer.Option(
        help="Ansible: seconds after the switch within which the health gate must confirm it, or the device "
             "reverts by itself [default: 2 x health-timeout + 120].", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Ansible: continue the fleet's interrupted or stopped rollout from its first unfinished "
                         "wave (ARTIFACT optional).")] = False,
    region: Annotated[Optional[str], typer.Option(
        help="Greengrass: AWS region (default: $AWS_DEFAULT_REGION, else the profile's region).")] = None,
    profile: Annotated[Optional[str], typer.Option(help="Greengrass: AWS profile.")] = None,
    bucket: Annotated[Optional[str], typer.Option(
        help="Greengrass: S3 bucket for the device bundle attached to the component.")] = None,
    rate: Annotated[Optional[int], typer.Option(help="Greengrass: devices per minute at first.")] = None,
    increment_factor: Annotated[Optional[float], typer.Option(help="Greengrass: rate multiplier per step.")] = None,
    increase_after: Annotated[Optional[int], typer.Option(
        help="Greengrass: successes before the rate rises.")] = None,
    max_per_minute: Annotated[Optional[int], typer.Option(help="Greengrass: highest rate.")] = None,
    abort_percent: Annotated[Optional[float], typer.Option(
        help="Greengrass: cancel once this share of finished devices failed.")] = None,
    abort_min_devices: Annotated[Optional[int], typer.Option(
        help="Greengrass: finished devices before the abort share applies.")] = None,
    timeout_minutes: Annotated[Optional[int], typer.Option(
        help="Greengrass: minutes a device may take before it counts as timed out.")] = None,
    wait: Annotated[float, typer.Option(
        help="Greengrass: seconds to follow the deployment (0: return once created).")] = 1800.0,
    key: VerifyKeyOption = None,
) -> None:
    """Roll an edge artifact out to a fleet in waves, stopping and rolling back on failure."""
    if status:
        return _status(app, fleet, limit, region, profile, artifact)
    if artifact is None and not resume:
        raise InputError("no artifact given", "pass the artifact folder: mlpack rollout ARTIFACT --fleet FLEET")
    if _is_greengrass(fleet):
        from ..rollout.greengrass import RolloutPolicy

        policy = RolloutPolicy(rate, increment_factor, increase_after, max_per_minute, abort_percent,
                               abort_min_devices, timeout_minutes)
        if resume:
            raise InputError("--resume is for Ansible fleets", "a Greengrass deployment continues by itself")
        return _greengrass(app, artifact, fleet, region, profile, bucket, policy, wait, key)
    _ansible(app, artifact, fleet, limit, waves, health_timeout, max_unreachable, confirm_timeout, resume, key)


def _ansible(app: Application, artifact: Path | None, fleet: str, limit: str | None, waves: str,
             health_timeout: float, max_unreachable: str, confirm_timeout: float | None, resume: bool,
             key: Path | None = None) -> None:
    from ..rollout.ansible import parse_waves, run_rollout
    from ..rollout.release import record_rollout
    from ..rollout.waves import UnreachableBudget

    budget, wave_sizes = UnreachableBudget.parse(max_unreachable), parse_waves(waves)
    try:
        result = run_rollout(artifact, fleet, limit=limit, waves=wave_sizes, health_timeout_s=health_timeout,
                             confirm_timeout_s=confirm_timeout, max_unreachable=budget, resume=resume, echo=app.echo,
                             key=key, progress=app.progress())
    except KeyboardInterrupt:
        raise RolloutInterrupted("rollout interrupted; devices cut off mid-update revert themselves once their "
                                 "confirmation time passes",
                                 f"continue with: mlpack rollout --resume --fleet {fleet}") from None
    record_rollout(result.release.artifact, "ansible", fleet, result.release.version, result.summary())
    app.echo(f"\n{result.release.name} {result.release.version}: {result.summary()}")
    for number, wave in enumerate(result.waves, 1):
        ran = "done" if number <= result.finished_waves else ("stopped" if number == result.finished_waves + 1
                                                                and result.reason else "not run")
        app.echo(f"wave {number} ({ran}):")
        for host in wave:
            record = result.devices.get(host, {})
            detail = f" ({record['reason']})" if record.get("reason") else ""
            app.echo(f"  {host}: {result.status_of(host)}{detail}")
    if not result.finished:
        raise MlpackError(
            f"rollout of {result.release.version} stopped after {result.reason}",
            "failed devices run their previous version again, unreachable ones were not changed (or revert "
            f"themselves); once fixed or back: mlpack rollout --resume --fleet {fleet}",
        )
    if result.unreachable:
        app.echo(f"{len(result.unreachable)} unreachable device(s) within --max-unreachable {budget} were not "
                 f"updated: {', '.join(result.unreachable)}; roll out again once they are back (devices on "
                 "the version are left alone)")


def _greengrass(app: Application, artifact: Path, fleet: str, region: str | None, profile: str | None, bucket: str | None,
                policy, wait: float, key: Path | None = None) -> None:
    from ..deploy.aws import connect
    from ..rollout import greengrass
    from ..rollout.release import record_rollout

    aws = connect(region, profile)
    with tempfile.TemporaryDirectory(prefix="mlpack-greengrass-") as tmp:
        outcome = greengrass.rollout(artifact, fleet, aws, bucket=bucket, policy=policy, wait_s=wait,
                                     workdir=Path(tmp), log=app.echo, key=key)
    record_rollout(artifact, "greengrass", fleet, outcome.deployment_id, outcome.status)
    app.echo(f"deployment {outcome.deployment_id}: {outcome.status}, {outcome.succeeded} succeeded, "
               f"{outcome.failed} failed, {outcome.pending} pending")
    if outcome.failed or outcome.status == "CANCELED":
        raise MlpackError(
            f"Greengrass deployment {outcome.deployment_id} {outcome.status.lower()} with {outcome.failed} failed devices",
            "failed devices roll back (failureHandlingPolicy ROLLBACK); see `aws iot list-job-executions-for-job`",
        )


def _status(app: Application, fleet: str, limit: str | None, region: str | None, profile: str | None,
            artifact: Path | None) -> None:
    if _is_greengrass(fleet):
        from ..deploy.aws import connect
        from ..rollout.greengrass import Greengrass

        devices = Greengrass(connect(region, profile)).fleet_status(fleet)
        width = max([len(d.thing) for d in devices] + [6])
        app.echo(f"{'DEVICE':<{width}}  {'VERSION':<20}  HEALTH     COMPONENT")
        for d in devices:
            app.echo(f"{d.thing:<{width}}  {d.version or '-':<20}  {d.health:<9}  {d.lifecycle or 'not installed'}")
        return
    from ..rollout.status import fleet_status, format_last_rollout, format_status

    from ..rollout.state import RolloutState, fleet_dir

    name = None
    if artifact is not None:  # its name gives the devices' default install folder
        from ..rollout.release import read_release

        name = read_release(artifact).name
    app.echo(format_status(fleet_status(fleet, limit, name)))
    last = RolloutState.load(fleet_dir(fleet))
    if last is not None:
        app.echo(format_last_rollout(last))


def register(cli: typer.Typer) -> None:
    cli.command("rollout")(command(rollout))
