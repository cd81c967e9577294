"""What the generated files say about an artifact, decided once, in Python.

Templates only format. Every value that is derived rather than copied from the target or
the model (distroless or not, ports, paths, names, which package a Lambda function ships,
which checks do not apply) is computed here from a `RenderContext` and handed to every
template as `facts` (see `render.render_group`). A template may loop over a list built
here, test a boolean computed here, and escape with its format's filter; it decides
nothing. Every function is pure and every fact object frozen.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import math

from ..awslambda.bytecode import INVALIDATION_MODE
from ..resources import data_dir
from ..image.cuda import cuda_plan, library_path
from .delivery import AUTOSCALERS, DELIVERY_ENGINES, chosen_templates
from ..monitoring.objectives import Indicator, in_flight, indicators, number
from ..runtime.providers import required_provider
from ..awslambda.prune import prune_rules, shell_commands
from ..runtime.budget import RequestBudget
from ..runtime.limits import RequestLimits

if TYPE_CHECKING:
    from .context import RenderContext

# The telemetry agent's Prometheus endpoint: agent.json, the Kubernetes pod and service,
# the Greengrass and systemd units all name this one port.
AGENT_PORT = 9464
# The unprivileged user (and group) every image and container runs as: the images' passwd
# file, the Kubernetes security contexts and the Greengrass containers all use it.
SERVICE_UID = 10001
SERVICE_USER = f"{SERVICE_UID}:{SERVICE_UID}"  # USER, docker --user
# The agent's Unix datagram socket where the service and the agent share /tmp: in a folder
# of its own, which the agent creates with mode 0700 (only their common user can enter it).
AGENT_SOCKET = "/tmp/mlpack-agent/agent.sock"
# Every address of the pod: its NetworkPolicy admits scrapes from the monitoring namespace only.
ALL_ADDRESSES = "0.0.0.0"
LOOPBACK = "127.0.0.1"
# Where the agent keeps its state (the OTLP disk buffer) on servers and devices.
AGENT_STATE_DIR = "/var/lib/mlpack-agent"
# Model digests are shown shortened, like the image tag mlpack builds (`<version>-<sha[:12]>`).
SHORT_SHA_LENGTH = 12
# Grafana dashboard uids have at most 40 characters.
GRAFANA_UID_LENGTH = 40
# The Lambda alias that SnapStart functions are invoked through (the latest published version).
LAMBDA_ALIAS = "live"
# systemd's strict rule for user names: at most 31 characters.
SYSTEMD_USER_LENGTH = 31
# A served Bento at rest, in MiB of resident memory: `bentoml serve`'s arbiter (about 100)
# and one worker with BentoML, onnxruntime and a small model loaded (about 125), as
# tests/test_request_memory.py measures them (and checks they stay under these).
BENTO_ARBITER_MB = 110
BENTO_WORKER_MB = 140
# An onnxruntime session holds the weights, their optimized copy and its arena.
SESSION_MODEL_FACTOR = 3
# The CUDA libraries a CUDA session maps (libcublasLt, the CUDA provider, libcurand,
# libcublas: about 1,000 MiB in the onnxruntime-gpu 1.31 and CUDA 13 wheels), per worker:
# an estimate (docs/serving.md), the tests run without a GPU.
CUDA_LIBRARIES_MB = 1024


@dataclass(frozen=True)
class CheckovSkip:
    """A checkov check that does not apply here, with the reason written next to the skip."""

    check: str
    reason: str


@dataclass(frozen=True)
class ContainerFacts:
    """The serving image (container/server) and the function image (container/lambda)."""

    # A shell-less image: the base's Python, the libraries it links (as ldd lists them) and the
    # packages, copied onto an empty image.
    distroless: bool
    # glibc's dynamic loader on the target's architecture (the ELF interpreter its ABI fixes):
    # its `--list` prints what `ldd` prints, without ldd's bash script around it, which under
    # qemu-user costs about ten times the listing itself (arm64 images built on x86).
    loader: str
    uid: int
    gid: int
    user: str  # "uid:gid"
    # The server image's agent configuration and the command that runs the agent from it
    # (a sidecar in Kubernetes, a second container on Greengrass).
    agent_config: str
    agent_command: tuple[str, ...]
    cuda: CudaFacts | None  # GPU images only
    site_packages: str  # where the server image installs its Python packages
    bytecode_invalidation: str  # the .pyc files' invalidation mode (the Lambda zip's too)


@dataclass(frozen=True)
class CudaFacts:
    """A GPU image's CUDA libraries (mlpack.image.cuda): where they are, what is kept, what is checked."""

    library_path: str  # the image's LD_LIBRARY_PATH
    library_dirs: tuple[str, ...]  # the CUDA wheels' library folders, relative to site-packages
    cudnn_dir: str  # cuDNN's library folder in the image ("" when the image carries no cuDNN)
    cudnn_keep: tuple[str, ...]  # the cuDNN sub-libraries kept there; the rest is removed
    why_cudnn: str
    # Every NEEDED entry of these (relative to site-packages) must resolve inside the image,
    # but for the driver's libraries, which the host provides; the build stage checks with ldd.
    check: tuple[str, ...]
    from_host: tuple[str, ...]


@dataclass(frozen=True)
class AgentFacts:
    """The telemetry agent's configuration (agent/agent.json) and where it listens."""

    port: int
    socket: str
    prometheus_enabled: bool
    # Where /metrics listens by default: every address in a server's pod (behind its
    # NetworkPolicy), loopback on devices (no NetworkPolicy there; containers that publish
    # the port set MLPACK_AGENT_PROMETHEUS_HOST themselves) and Lambda (nothing scrapes it).
    prometheus_host: str
    # Service and agent in one pid namespace (a Lambda extension and its function): the
    # agent also refuses senders it cannot see. Never for the containers of a pod.
    same_pid_namespace: bool
    otlp_interval_s: int
    state_dir: str
    buffer_dir: str
    buffer_max_bytes: int


@dataclass(frozen=True)
class MonitoringFacts:
    """The Prometheus alert rules and the Grafana dashboard of the artifact."""

    # PromQL label matchers: the agent copies service_name from its resource onto every
    # series; the dashboard also filters on its $instance variable (one agent per device).
    selector: str
    dashboard_selector: str
    dashboard_uid: str
    # The accelerator a GPU artifact must run on (its first execution provider); None for CPU
    # targets. Its alert fires when the agent reports any other provider.
    required_provider: str | None
    # The service-level objective (the target's [slo]) over every version of the service:
    # one alert rule per indicator (mlpack.monitoring.objectives).
    objectives: tuple[Indicator, ...]


@dataclass(frozen=True)
class DriftFacts:
    """Drift against the artifact's profile: the agent's window, the alerts' thresholds."""

    enabled: bool  # the artifact has a drift profile: drift alerts and the dashboard's drift row
    outputs: bool  # the profile tracks outputs too: an output drift alert
    psi_threshold: float
    out_of_range_threshold: float
    sustained: str  # the alerts' `for:`
    # agent.json's `drift` section: settings, and the features in slot order (from the
    # profile itself, which only the build passes; None without it).
    agent: dict | None


@dataclass(frozen=True)
class EcrFacts:
    """The ECR repository the IaC creates (terraform-ecr, terraform-lambda, SAM)."""

    repository_name: str
    untagged_image_days: int


@dataclass(frozen=True)
class LambdaFacts:
    """The Lambda function (SAM and terraform-lambda)."""

    use_image: bool
    image_uri: str  # the image by digest when use_image, else ""
    runtime: str
    architecture: str
    handler: str
    description: str
    timeout_s: int
    reserved_concurrency: int
    log_retention_days: int
    log_group: str
    checkov_skips: tuple[CheckovSkip, ...]
    # SnapStart (zip functions only: Lambda has no SnapStart for images) snapshots
    # published versions; the alias points at the latest, and the Function URL serves it.
    snapstart: bool
    alias: str
    # The function image's build stage: the zip's prune rules as shell commands on "$site",
    # and the bytecode's invalidation mode (the same as the zip's).
    prune_commands: tuple[str, ...]
    bytecode_invalidation: str


@dataclass(frozen=True)
class ModelContainer:
    """The model's container in a pod: its name, health routes and what else it is told."""

    name: str
    startup_path: str
    ready_path: str
    live_path: str
    env: tuple[tuple[str, str], ...]  # besides the agent's socket


@dataclass(frozen=True)
class KubernetesFacts:
    """The Kubernetes and k3s manifests."""

    arch: str  # the kubernetes.io/arch node label
    min_replicas: int
    max_replicas: int
    checkov_skips: tuple[CheckovSkip, ...]  # annotations of the Deployment or DaemonSet
    metrics_host: str  # the agent sidecar's /metrics address: the pod's, behind its NetworkPolicy
    model: ModelContainer
    deployment_replicas: int  # 0 where a delivery engine runs the pods from the Deployment's template
    # The files the chosen autoscaler and delivery engine add to the base's kustomization.
    extra_resources: tuple[str, ...]


@dataclass(frozen=True)
class ScalingFacts:
    """The autoscaler the artifact was built for (mlpack.render.delivery.AUTOSCALERS) and what it scales."""

    autoscaler: str  # hpa or keda
    api_version: str  # of the autoscaler object (Flagger's autoscalerRef, the overlays' patches)
    kind: str
    min_path: str
    max_path: str
    target_api_version: str  # what it scales: the Deployment, or the delivery engine's workload
    target_kind: str
    min_replicas: int  # 0 where the target allows cold starts (scale_to_zero)
    max_replicas: int
    staging_min_replicas: int  # the staging overlay's floor
    # KEDA: the agent's requests in flight across the service (Little's law), the number one
    # replica should carry (as KEDA's metadata writes it, and as a Kubernetes quantity for
    # KServe), and the level above which the service is active.
    query: str
    threshold: str
    threshold_quantity: str
    activation: str
    wake_query: str | None
    prometheus_url: str


@dataclass(frozen=True)
class DeliveryFacts:
    """Progressive delivery: the canary's steps and the checks that judge it."""

    engine: str  # mlpack.render.delivery.DELIVERY_ENGINES: none, argo-rollouts, flagger
    # The objective over this artifact's version only (its service_version, the image tag).
    checks: tuple[Indicator, ...]
    weights: tuple[int, ...]
    step: str  # each step's watch, a duration
    interval: str  # between two measurements
    initial_delay: str  # before the first: the canary's pods start and report
    failure_limit: int  # failed measurements tolerated (Argo's failureLimit)
    rollback_after: int  # failed checks that roll back (Flagger's threshold): one more than tolerated
    gateway_namespace: str  # Flagger: the Gateway API gateway its HTTPRoute attaches to
    gateway_name: str
    prometheus_url: str


@dataclass(frozen=True)
class KServeFacts:
    """The KServe InferenceService (iac/kserve): a custom predictor running the artifact's image."""

    deployment_mode: str  # Standard (KServe 0.16+): a Deployment, no Knative
    autoscaler_class: str  # hpa or keda
    min_replicas: int  # at least 1: KServe's KEDA scaler has no wake-up signal at zero
    model: ModelContainer


@dataclass(frozen=True)
class SystemdFacts:
    """The model and agent units of a device without containers."""

    home: str
    app: str
    venv: str
    user: str
    run_dir: str
    agent_state_dir: str
    agent_memory_mb: int
    # RestrictAddressFamilies=: the agent needs its socket and TCP; the model service also
    # netlink, which libzmq (BentoML's process manager, circus) opens to list the network
    # interfaces: without it the service aborts at start (tests/test_systemd_units.py).
    agent_address_families: str = "AF_UNIX AF_INET AF_INET6"
    service_address_families: str = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
    # The system call groups denied beyond @system-service's allow list. libzmq sets its
    # threads' scheduling (sched_setscheduler, in @resources) and aborts when refused.
    agent_denied_calls: str = "@privileged @resources"
    service_denied_calls: str = "@privileged"
    # What the device's venv installs beside the Bento's own requirements: the agent's
    # dependencies (its code comes with the Bento, bento/src/mlpack_agent).
    agent_requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComponentDependency:
    name: str
    version_requirement: str
    dependency_type: str


@dataclass(frozen=True)
class GreengrassFacts:
    """The Greengrass v2 components (model and agent) and their deployment."""

    component: str
    agent_component: str
    version: str
    architecture: str  # the recipe's Platform.architecture
    state_dir: str
    run_dir: str
    agent_buffer_dir: str
    container: str
    agent_container: str
    socket_dir: str  # run_dir as mounted in both containers
    socket: str
    docker_hardening: tuple[str, ...]
    dependencies: tuple[ComponentDependency, ...]  # of the model component
    agent_dependencies: tuple[ComponentDependency, ...]
    agent_memory_mb: int
    # The agent's /metrics inside its container (every address of the container's own network
    # namespace); the device publishes it on the component's BindAddress, 127.0.0.1 by default.
    metrics_host: str


@dataclass(frozen=True)
class ServerMemoryFacts:
    """What a server's container may use at most (the Kubernetes limit, the Greengrass
    container's --memory, the systemd unit's MemoryMax): BentoML at rest, each worker's
    sessions, and `max_concurrency` requests per worker at their most (docs/serving.md)."""

    limit_mb: int  # in 64 MiB steps
    footprint_mb: float  # at rest, the model loaded
    request_mb: float  # one request at its most: mlpack_runtime.budget.RequestBudget.peak_bytes


@dataclass(frozen=True)
class Facts:
    """Everything `facts` holds in a template."""

    short_sha: str  # the model's sha256, shortened
    container: ContainerFacts
    agent: AgentFacts
    monitoring: MonitoringFacts
    drift: DriftFacts
    ecr: EcrFacts
    aws_lambda: LambdaFacts
    kubernetes: KubernetesFacts
    scaling: ScalingFacts
    delivery: DeliveryFacts
    kserve: KServeFacts
    systemd: SystemdFacts
    greengrass: GreengrassFacts
    server_memory: ServerMemoryFacts


def short_sha(sha256: str) -> str:
    return sha256[:SHORT_SHA_LENGTH]


GLIBC_LOADER = {"x86_64": "/lib64/ld-linux-x86-64.so.2", "aarch64": "/lib/ld-linux-aarch64.so.1"}


def container_facts(ctx: RenderContext) -> ContainerFacts:
    config = "/opt/mlpack/agent/agent.json"
    return ContainerFacts(
        # Shell-less unless the image relies on libraries of its base that ldd cannot see (a
        # CUDA base's, which cuDNN dlopens): GPU images carry CUDA as wheels in site-packages,
        # which the copy takes whole.
        distroless=not ctx.target.image.provides_libraries,
        loader=GLIBC_LOADER[ctx.target.platform.arch],
        uid=SERVICE_UID,
        gid=SERVICE_UID,
        user=SERVICE_USER,
        agent_config=config,
        agent_command=("python3", "-m", "mlpack_agent.main", "--config", config),
        cuda=cuda_facts(ctx),
        site_packages=SITE_PACKAGES,
        bytecode_invalidation=INVALIDATION_MODE,
    )


SITE_PACKAGES = "/opt/mlpack/site-packages"  # where every server image installs its Python packages
CUDA_PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"


def cuda_facts(ctx: RenderContext) -> CudaFacts | None:
    plan = cuda_plan(ctx.target, ctx.model.operators)
    if plan is None:
        return None
    cuda = ctx.target.cuda
    cudnn_dir = next((d for d in cuda.library_dirs if "cudnn" in d), "") if plan.cudnn else ""
    return CudaFacts(
        library_path=":".join(library_path(ctx.target, SITE_PACKAGES)),
        library_dirs=tuple(cuda.library_dirs),
        cudnn_dir=cudnn_dir,
        cudnn_keep=plan.cudnn_libraries,
        why_cudnn=plan.why_cudnn,
        check=(CUDA_PROVIDER, *(f"{cudnn_dir}/{lib}" for lib in plan.cudnn_libraries)),
        from_host=tuple(cuda.driver_libraries),
    )


def agent_facts(ctx: RenderContext) -> AgentFacts:
    on_lambda = ctx.target.role == "lambda"
    # Nothing can scrape a Lambda execution environment: its metrics leave by OTLP only
    # (the extension exports at each invoke and flushes at shutdown). Only /tmp is
    # writable there, and the function shares it (512 MB by default): a small buffer.
    state_dir = "/tmp/mlpack-agent" if on_lambda else AGENT_STATE_DIR
    return AgentFacts(
        port=AGENT_PORT,
        socket=AGENT_SOCKET,
        prometheus_enabled=not on_lambda,
        prometheus_host=ALL_ADDRESSES if ctx.target.role == "server" else LOOPBACK,
        same_pid_namespace=on_lambda,
        otlp_interval_s=10 if on_lambda else 15,
        state_dir=state_dir,
        buffer_dir=f"{state_dir}/buffer",
        buffer_max_bytes=(16 if on_lambda else 64) * 1024 * 1024,
    )


def service_selector(ctx: RenderContext) -> str:
    """Every series of the artifact's service: the agent labels them with its resource."""
    return f'service_name="{ctx.artifact}"'


def version_selector(ctx: RenderContext) -> str:
    """The series of this build only (service.version is the image tag, `<mlpack>-<sha[:12]>`)."""
    return f'{service_selector(ctx)}, service_version="{ctx.image.tag}"'


def monitoring_facts(ctx: RenderContext) -> MonitoringFacts:
    selector = service_selector(ctx)
    provider = required_provider(ctx.target.runtime.session_settings())
    return MonitoringFacts(
        selector=selector,
        dashboard_selector=f'{selector}, instance=~"$instance"',
        dashboard_uid=f"mlpack-{ctx.artifact}"[:GRAFANA_UID_LENGTH],
        required_provider=provider,
        objectives=indicators(ctx.target.slo, selector, provider),
    )


# The agent's window slides by a tenth of itself (mlpack_agent.drift).
DRIFT_SLICES = 10


def drift_facts(ctx: RenderContext) -> DriftFacts:
    settings, section, profile = ctx.target.drift, ctx.drift, ctx.drift_profile
    agent = None
    if section is not None and profile is not None:
        from ..monitoring.drift import features

        if profile["id"] != section.id:
            raise ValueError(f"drift profile {profile['id']} is not the manifest's {section.id}")
        agent = {"profile": section.id, "window_rows": settings.window_rows, "slices": DRIFT_SLICES,
                 "features": features(profile)}
    return DriftFacts(
        enabled=section is not None, outputs=section is not None and section.output_features > 0,
        psi_threshold=settings.psi_threshold, out_of_range_threshold=settings.out_of_range_threshold,
        sustained=settings.sustained, agent=agent,
    )


def ecr_facts(ctx: RenderContext) -> EcrFacts:
    return EcrFacts(repository_name=ctx.artifact, untagged_image_days=14)


def lambda_facts(ctx: RenderContext) -> LambdaFacts:
    # Lambda pulls images only from ECR, and only a pushed image has a digest: until then
    # the function ships as the artifact's zip.
    use_image = ctx.image.digest is not None and ".dkr.ecr." in ctx.image.repository
    code_signing = (
        "Integrity is pinned by the image digest; code signing (AWS Signer) applies to zip packages only"
        if use_image else
        "The zip's sha256 is recorded in manifest.json and checked by `mlpack verify`; "
        "add a CodeSigningConfig if your organization signs with AWS Signer"
    )
    return LambdaFacts(
        use_image=use_image,
        image_uri=ctx.image.pinned if use_image else "",
        runtime=f"python{ctx.target.platform.python_version}",
        architecture="arm64" if ctx.target.platform.arch == "aarch64" else "x86_64",
        handler="handler.handler",  # handler() in handler.py of the app folder (templates/lambda)
        description=f"mlpack model {ctx.name} (sha256 {short_sha(ctx.model.sha256)})",
        timeout_s=30,
        reserved_concurrency=10,
        log_retention_days=365,
        log_group=f"/aws/lambda/{ctx.artifact}",
        checkov_skips=(
            CheckovSkip("CKV_AWS_117", "The function reaches no private network resource; attaching a VPC adds "
                        "ENI setup and NAT cost for nothing. Add VpcConfig if your OTLP collector is private"),
            CheckovSkip("CKV_AWS_272", code_signing),
        ),
        snapstart=ctx.snapstart and not use_image,
        alias=LAMBDA_ALIAS,
        prune_commands=tuple(shell_commands(prune_rules(ctx.target), '"$site"')),
        bytecode_invalidation=INVALIDATION_MODE,
    )


def kubernetes_facts(ctx: RenderContext) -> KubernetesFacts:
    k8s = ctx.target.kubernetes
    skips = () if ctx.image.digest else (CheckovSkip(
        "CKV_K8S_43", "The image is pinned by tag until `mlpack push` records its digest; "
        "run `mlpack iac` after pushing to pin it by digest"),)
    health = ctx.target.serving.health_path
    return KubernetesFacts(
        arch=ctx.target.platform.oci.split("/")[1],
        min_replicas=k8s.min_replicas,
        # The autoscaler rejects a ceiling below its floor.
        max_replicas=max(k8s.max_replicas, k8s.min_replicas),
        checkov_skips=skips,
        metrics_host=ALL_ADDRESSES,
        model=ModelContainer(name="model", startup_path=health, ready_path=health, live_path=health, env=()),
        deployment_replicas=0 if DELIVERY_ENGINES[k8s.delivery].deployment_replicas_zero else k8s.min_replicas,
        extra_resources=tuple(_file_names(chosen_templates(k8s.autoscaler, k8s.delivery))),
    )


def quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, others in thousandths ("2500m")."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def _file_names(template_folders: list[str]) -> list[str]:
    from .templates import template_paths  # render imports this module
    from ..targets import RenderGroup

    return [path for folder in template_folders for path in template_paths(RenderGroup(templates=folder))]


def scaling_facts(ctx: RenderContext) -> ScalingFacts:
    k8s, serving = ctx.target.kubernetes, ctx.target.serving
    autoscaler = AUTOSCALERS[k8s.autoscaler]
    scales = DELIVERY_ENGINES[k8s.delivery].scales
    floor = 0 if k8s.scale_to_zero else k8s.min_replicas
    # Half of what a replica admits at once (max_concurrency per worker, the rest wait
    # unread and then get 503): room for a burst while new replicas start.
    per_replica = k8s.in_flight_per_replica or serving.workers * serving.max_concurrency / 2
    return ScalingFacts(
        autoscaler=autoscaler.name, api_version=autoscaler.api_version, kind=autoscaler.kind,
        min_path=autoscaler.min_path, max_path=autoscaler.max_path,
        target_api_version=scales.api_version, target_kind=scales.kind,
        min_replicas=floor, max_replicas=max(k8s.max_replicas, k8s.min_replicas, 1),
        staging_min_replicas=min(floor, 1),
        query=in_flight(service_selector(ctx)),
        threshold=number(per_replica),
        threshold_quantity=quantity(per_replica),
        activation=number(k8s.activation_in_flight),
        wake_query=k8s.wake_query if k8s.scale_to_zero else None,
        prometheus_url=k8s.prometheus_url,
    )


def delivery_facts(ctx: RenderContext) -> DeliveryFacts:
    k8s = ctx.target.kubernetes
    namespace, _, name = k8s.gateway.partition("/")
    return DeliveryFacts(
        engine=k8s.delivery,
        checks=indicators(ctx.target.slo, version_selector(ctx),
                          required_provider(ctx.target.runtime.session_settings())),
        weights=tuple(k8s.canary_weights),
        step=f"{k8s.canary_step_minutes}m",
        interval="1m",
        initial_delay="1m",
        failure_limit=1,
        rollback_after=2,
        gateway_namespace=namespace,
        gateway_name=name,
        prometheus_url=k8s.prometheus_url,
    )


def kserve_facts(ctx: RenderContext) -> KServeFacts:
    k8s = ctx.target.kubernetes
    return KServeFacts(
        deployment_mode="Standard",
        autoscaler_class=k8s.autoscaler,
        min_replicas=max(k8s.min_replicas, 1),
        # KServe's custom predictor: the container KServe looks for, told the protocol it
        # speaks; the Open Inference Protocol's own health routes.
        model=ModelContainer(name="kserve-container", startup_path="/v2/health/live", ready_path="/v2/health/ready",
                             live_path="/v2/health/live", env=(("PROTOCOL", "v2"),)),
    )


def server_memory_facts(ctx: RenderContext) -> ServerMemoryFacts:
    serving = ctx.target.serving
    served = ctx.processing.runtime_config()["inputs"] if ctx.processing else \
        [t.model_dump() for t in ctx.model.signature.inputs]
    budget = RequestBudget.of(RequestLimits.from_json(serving.limits_settings()), served)
    request_mb = budget.peak_bytes() / 2**20
    worker_mb = SESSION_MODEL_FACTOR * ctx.model.size_bytes / 2**20
    if "CUDAExecutionProvider" in ctx.target.runtime.execution_providers:
        worker_mb += CUDA_LIBRARIES_MB
    footprint = BENTO_ARBITER_MB + serving.workers * (BENTO_WORKER_MB + worker_mb)
    need = footprint + serving.workers * serving.max_concurrency * request_mb
    return ServerMemoryFacts(limit_mb=int(math.ceil(need / 64) * 64), footprint_mb=footprint, request_mb=request_mb)


def systemd_facts(ctx: RenderContext) -> SystemdFacts:
    home = f"/opt/mlpack/{ctx.artifact}"
    run_dir = f"mlpack-{ctx.artifact}"
    return SystemdFacts(
        home=home,
        # `mlpack rollout` installs each version under versions/ and switches the `current`
        # link, so the units run whatever `current` points to; the venv is shared by versions.
        app=f"{home}/current",
        venv=f"{home}/venv",
        # Both units run as the same dynamic user, so the service reaches the agent's socket
        # in their shared runtime directory. Models whose names share their first 24
        # characters share the user on one device.
        user=f"mlpack-{ctx.name}"[:SYSTEMD_USER_LENGTH].rstrip("-"),
        run_dir=run_dir,
        agent_state_dir=f"{run_dir}-agent",
        agent_memory_mb=256,
        agent_requirements=agent_requirements(),
    )


@functools.cache
def agent_requirements() -> tuple[str, ...]:
    """The mlpack-agent distribution's dependencies, as its pyproject.toml declares them."""
    with (data_dir("agent") / "pyproject.toml").open("rb") as f:
        return tuple(tomllib.load(f)["project"]["dependencies"])


def greengrass_facts(ctx: RenderContext) -> GreengrassFacts:
    component = f"dev.mlpack.{ctx.artifact}"
    agent_component = f"{component}.agent"
    # Component versions are semantic versions: the mlpack release plus the model's sha256
    # as a prerelease tag (prefixed so that it is never a number).
    release = ctx.mlpack_version.split("-")[0].split("+")[0]
    version = f"{release}-m{short_sha(ctx.model.sha256)}"
    state_dir = f"/var/lib/mlpack/{ctx.artifact}"
    container = f"mlpack-{ctx.artifact}"
    socket_dir = "/run/mlpack"
    # aws.greengrass.DockerApplicationManager pulls the image; TokenExchangeService lends
    # the ECR credentials.
    shared = tuple(ComponentDependency(name, ">=2.0.0 <3.0.0", "HARD") for name in (
        "aws.greengrass.DockerApplicationManager", "aws.greengrass.TokenExchangeService"))
    return GreengrassFacts(
        component=component,
        agent_component=agent_component,
        version=version,
        # Greengrass's names for the platforms (Lambda's are arm64/x86_64, Kubernetes' the OCI ones).
        architecture="aarch64" if ctx.target.platform.arch == "aarch64" else "amd64",
        state_dir=state_dir,
        run_dir=f"{state_dir}/run",
        agent_buffer_dir=f"{state_dir}/agent-buffer",
        container=container,
        agent_container=f"{container}-agent",
        socket_dir=socket_dir,
        socket=f"{socket_dir}/agent.sock",
        docker_hardening=(
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", SERVICE_USER,
            "--pids-limit", "256", "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
        ),
        # The agent of the same build (=version); SOFT: the model service keeps running when
        # its agent restarts.
        dependencies=(*shared, ComponentDependency(agent_component, f"={version}", "SOFT")),
        agent_dependencies=shared,
        agent_memory_mb=128,
        metrics_host=ALL_ADDRESSES,
    )


def template_facts(ctx: RenderContext) -> Facts:
    """Every fact the templates of any render group may use."""
    return Facts(
        short_sha=short_sha(ctx.model.sha256),
        container=container_facts(ctx),
        agent=agent_facts(ctx),
        monitoring=monitoring_facts(ctx),
        drift=drift_facts(ctx),
        ecr=ecr_facts(ctx),
        aws_lambda=lambda_facts(ctx),
        kubernetes=kubernetes_facts(ctx),
        scaling=scaling_facts(ctx),
        delivery=delivery_facts(ctx),
        kserve=kserve_facts(ctx),
        systemd=systemd_facts(ctx),
        greengrass=greengrass_facts(ctx),
        server_memory=server_memory_facts(ctx),
    )
