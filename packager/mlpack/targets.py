"""Hardware targets as data: one TOML file per target in `targets/`.

Code asks a target what it has ("builds a Lambda zip?", "which execution providers?")
and never branches on its name, so adding a target means adding a file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .render.delivery import (
    AUTOSCALERS, DELIVERY_ENGINES, KUBERNETES_BASE, KUBERNETES_GROUP, choice_problems, chosen_templates,
)
from .errors import InputError, MlpackError
from .paths import ArtifactPath, FolderPath
from .resources import data_dir

if TYPE_CHECKING:
    from .optimize.variants.config import VariantConfig

Build = Literal["bento", "lambda-zip"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Platform(_Strict):
    oci: str = Field(pattern=r"^linux/(amd64|arm64)$", description="OCI platform of the image")
    arch: Literal["x86_64", "aarch64"]
    python_platform: str = Field(description="pip/uv platform tag for the target's wheels")
    python_version: str = Field(pattern=r"^3\.\d+$")


class Runtime(_Strict):
    onnxruntime: Literal["onnxruntime", "onnxruntime-gpu"]
    version: str | None = Field(
        None,
        pattern=r"^\d+\.\d+(\.\d+)?$",
        description="release the artifact pins; default: the onnxruntime mlpack measured with",
    )
    execution_providers: list[str] = Field(min_length=1)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    intra_op_threads: int = Field(0, ge=0, description="0 lets onnxruntime choose")
    inter_op_threads: int = Field(0, ge=0)
    enable_cpu_mem_arena: bool = True
    disabled_optimizers: list[str] = Field(
        default_factory=list,
        description="onnxruntime graph optimizers (by name, e.g. SkipLayerNormFusion) the session leaves out",
    )
    denormal_as_zero: bool = Field(
        False,
        description="onnxruntime's threads flush denormal floats to zero (session.set_denormal_as_zero): "
                    "x86 kernels slow down many times on such tiny values",
    )

    def session_settings(self) -> dict[str, Any]:
        """The `session` settings of runtime.json: what serving, the gate and the timer open sessions with."""
        return self.model_dump(exclude={"version"})


class Image(_Strict):
    base: str = Field(description="the public base image a user's machine pulls")
    python: str = Field(description="the Python interpreter inside the base image")
    system_packages: list[str] = Field(
        default_factory=list, description="Debian/Ubuntu packages the base lacks (e.g. Python)"
    )
    provides_libraries: list[str] = Field(
        default_factory=list,
        description="shared libraries (sonames) the base image holds beyond glibc, libstdc++, libgcc_s and zlib, "
                    "which every Debian or Ubuntu base has: e.g. a CUDA base's libcudart.so.12",
    )


class Cuda(_Strict):
    """A GPU target's CUDA: NVIDIA's pip wheels in the image, of the CUDA release the pinned
    onnxruntime-gpu was built for; the driver comes from the host (docs/serving.md)."""

    version: str = Field(pattern=r"^\d+\.\d+$",
                         description="the CUDA release onnxruntime-gpu is built for (its build info; checked at build)")
    min_driver: str = Field(description="the oldest NVIDIA Linux driver that runs this CUDA release")
    wheels: list[str] = Field(min_length=1, description="pinned wheels every image carries: the CUDA runtime, cuBLAS, "
                              "cuRAND (what onnxruntime-gpu's CUDA provider links)")
    cudnn: str = Field(description="the pinned cuDNN wheel, shipped only for models whose operators call cuDNN")
    nvrtc: str | None = Field(None, description="the pinned NVRTC wheel, shipped with cuDNN's runtime-compiled "
                              "engines (convolutions)")
    library_dirs: list[str] = Field(min_length=1, description="the wheels' library folders, relative to "
                                    "site-packages: the image's LD_LIBRARY_PATH")
    driver_libraries: list[str] = Field(default_factory=lambda: ["libcuda.so.1"],
                                        description="what the host's driver provides to the container")
    driver_dirs: list[str] = Field(default_factory=lambda: ["/usr/local/nvidia/lib64"],
                                   description="where some clusters mount the driver (GKE), after the wheels' folders")


class Optimize(_Strict):
    """How mlpack shrinks the model for this target (docs/optimization.md explains each name)."""

    passes: list[Literal["prune", "graph"]] = Field(
        default_factory=list, description="float rewrites every variant starts from, in order"
    )
    variants: list[str] = Field(
        default_factory=list,
        description="candidates tried besides float, in order (names from mlpack.optimize.variants); each "
                    "must pass the accuracy gate",
    )
    policy: Literal["fastest", "smallest"] = Field(description="which passing variant ships")
    graph_level: Literal["basic", "extended"] = Field(
        "basic", description="onnxruntime graph optimizations saved offline; both stay portable"
    )
    weight_type: Literal["qint8", "quint8"] = Field("qint8", description="int8 weight type")
    latency_batch: int = Field(32, ge=2, description="the larger batch size timed besides batch 1")
    tolerance: float = Field(
        0.1, ge=0, le=1, description="differences smaller than this share count as ties, which go to accuracy"
    )
    config: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="[optimize.config.NAME]: settings of a listed variant, by its config's keys"
    )

    # The variants' declarations live with the variants (mlpack.optimize.variants), which are
    # imported here, when a file is checked, not when this module loads: they need this module.
    # A manifest's snapshot is checked as data, not against the variants this installation has.
    @field_validator("variants")
    @classmethod
    def _variants_known_and_in_order(cls, names: list[str], info: ValidationInfo) -> list[str]:
        from .optimize.variants import order_problems

        if not _snapshot(info):
            _raise_all(order_problems(names))
        return names

    @field_validator("config")
    @classmethod
    def _config_fits_each_variant(cls, tables: dict[str, dict[str, Any]], info: ValidationInfo) -> dict[str, Any]:
        from .optimize.variants import config_problems

        if _snapshot(info):
            return tables
        shared = {key: info.data[key] for key in _SHARED_BY_VARIANTS if key in info.data}
        _raise_all(config_problems(tables, info.data.get("variants"), shared))
        return tables

    def variant_config(self, name: str) -> VariantConfig:
        """The typed config of a listed variant: its defaults, this target's weight_type, its table."""
        from .optimize.variants import variant_config

        shared = {key: getattr(self, key) for key in _SHARED_BY_VARIANTS}
        return variant_config(name, self.config.get(name, {}), shared)


_SHARED_BY_VARIANTS = ("weight_type",)  # [optimize] keys every variant whose config has them starts from


def _snapshot(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("snapshot"))


def _raise_all(problems: list[str]) -> None:
    """One error for a key, stating each of its problems (pydantic adds the key)."""
    if problems:
        raise PydanticCustomError("mlpack_target", "{problems}", {"problems": "; ".join(problems)})


class Serving(_Strict):
    port: int = Field(3000, ge=1, le=65535)
    health_path: str = "/readyz"
    workers: int = Field(1, ge=1)
    # Adaptive batching (BentoML) for models with a free batch axis.
    max_batch_size: int = Field(64, ge=2)
    # A ceiling, not a batching window (BentoML adapts the window): its dispatcher refuses
    # with HTTP 503 any request it expects to finish later than this, so a tight value
    # turns ordinary load into errors.
    max_latency_ms: int = Field(1000, ge=1)
    # Requests that cannot hurt the service (mlpack_runtime.limits, docs/serving.md); the
    # `mlpack build` options of the same names override them for one artifact.
    max_request_mb: float = Field(
        8, gt=0, le=1024,
        description="largest request body in MiB: a larger one gets HTTP 413 before it is read (--max-request-mb)",
    )
    max_rows: int = Field(
        1024, ge=1, description="most rows (first-axis entries) of an input per request; more get HTTP 400 (--max-rows)"
    )
    allow_non_finite: bool = Field(
        False, description="accept NaN and infinities in float inputs; else HTTP 400 naming the input (--allow-non-finite)"
    )
    max_concurrency: int = Field(
        8, ge=1, le=1024,
        description="requests with a body one worker reads and answers at once; the next wait unread (then 503). "
                    "With the request limits it bounds a worker's memory, and so the container's limit",
    )

    def limits_settings(self) -> dict[str, Any]:
        """The `limits` of runtime.json: what mlpack_runtime.limits enforces, in bytes and rows."""
        return {
            "max_request_bytes": int(self.max_request_mb * 2**20),
            "max_rows": self.max_rows,
            "allow_non_finite": self.allow_non_finite,
            "max_concurrency": self.max_concurrency,
        }


class Drift(_Strict):
    """When the agent calls inputs or outputs drifted from the calibration data (docs/agent.md):
    the alert rules' thresholds and the agent's window. `mlpack build --drift KEY=VALUE`
    changes them for one artifact."""

    psi_threshold: float = Field(
        0.25, gt=0, description="a feature drifted when its population stability index is above this "
                                "(0.1 to 0.25 is commonly read as a moderate shift, above 0.25 as a major one)")
    out_of_range_threshold: float = Field(
        0.05, gt=0, le=1, description="alert when more than this share of requests' rows has an input outside "
                                      "the calibration data's range")
    sustained: str = Field("15m", pattern=r"^[1-9][0-9]*(s|m|h)$",
                           description="how long a score must stay above its threshold before the alert fires "
                                       "(a Prometheus duration)")
    window_rows: int = Field(1000, ge=20, le=10_000_000, description="rows the agent's sliding window holds")
    max_bins: int = Field(10, ge=2, le=20, description="histogram bins per feature at most (fewer with few "
                                                        "calibration rows: one per 20 rows)")


class Toleration(_Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class Kubernetes(_Strict):
    """How the generated Kubernetes manifests schedule and size the service."""

    min_replicas: int = Field(2, ge=1, description="HPA floor; 2 keeps a replica through a node drain")
    max_replicas: int = Field(10, ge=1)
    cpu_target_percent: int = Field(70, ge=1, le=100, description="HPA CPU utilization target")
    cpu_request: str = Field("500m", pattern=r"^[0-9]+m?$")
    cpu_limit: str = Field("2", pattern=r"^[0-9]+m?$")
    gpus: int = Field(0, ge=0, description="nvidia.com/gpu per pod")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    # Past one server (docs/kubernetes.md): the autoscaler and the progressive-delivery engine
    # the manifests are written for (mlpack build --autoscaler, --delivery; mlpack.render.delivery).
    autoscaler: str = Field("hpa", description=f"{' or '.join(AUTOSCALERS)} (--autoscaler)")
    delivery: str = Field("none", description=f"{', '.join(DELIVERY_ENGINES)} (--delivery)")
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090", pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="the Prometheus that KEDA, Argo Rollouts and Flagger query (the Prometheus Operator's service)",
    )
    in_flight_per_replica: float | None = Field(
        None, gt=0, description="KEDA: the requests in flight one replica should carry; default: half of the "
                                "requests its workers admit at once (serving.workers x serving.max_concurrency / 2)",
    )
    activation_in_flight: float = Field(
        0.5, ge=0, description="KEDA: requests in flight above which the service is active (wakes from zero)")
    scale_to_zero: bool = Field(
        False, description="KEDA: the service may cold-start, so idle replicas go to zero; needs wake_query, "
                           "because at zero replicas no agent reports",
    )
    wake_query: str | None = Field(
        None, min_length=1, description="with scale_to_zero: PromQL that exceeds activation_in_flight when requests "
                                        "arrive while no replica runs (e.g. your ingress controller's request rate)",
    )
    canary_weights: list[int] = Field([10, 25, 50], min_length=1,
                                      description="percent of traffic (or replicas) the canary gets, step by step")
    canary_step_minutes: int = Field(5, ge=1, le=120, description="how long each canary step is watched")
    gateway: str = Field("gateway/mlpack", pattern=r"^[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*$",
                         description="Flagger: the Gateway API gateway (namespace/name) whose route it shifts")

    @field_validator("autoscaler")
    @classmethod
    def _known_autoscaler(cls, name: str, info: ValidationInfo) -> str:
        if not _snapshot(info):
            _raise_all(choice_problems(name, "none"))
        return name

    @field_validator("delivery")
    @classmethod
    def _known_engine(cls, name: str, info: ValidationInfo) -> str:
        if not _snapshot(info):
            _raise_all(choice_problems("hpa", name))
        return name

    @field_validator("canary_weights")
    @classmethod
    def _rising_percentages(cls, weights: list[int]) -> list[int]:
        if any(not 0 < w < 100 for w in weights) or weights != sorted(set(weights)):
            raise ValueError("must rise step by step, each between 1 and 99 (100 is the promotion)")
        return weights

    @model_validator(mode="after")
    def _scale_to_zero_can_wake(self) -> Kubernetes:
        if self.scale_to_zero and (self.autoscaler != "keda" or not self.wake_query):
            raise ValueError("scale_to_zero needs autoscaler = \"keda\" and a wake_query: at zero replicas no agent "
                             "reports, so only a signal from in front of the pods can wake the service")
        return self


class Slo(_Strict):
    """The artifact's service-level objective, declared once: every generated alert and canary
    check is one PromQL query of it (mlpack.monitoring.objectives, docs/kubernetes.md). `mlpack build
    --slo KEY=VALUE` overrides a key for one artifact."""

    error_ratio: float = Field(0.05, gt=0, lt=1, description="failed requests per request over the window, at most")
    latency_quantile: float = Field(0.99, ge=0.5, lt=1, description="the quantile of end-to-end latency judged")
    latency_s: float = Field(1.0, gt=0, le=60, description="that quantile's limit, in seconds")
    window: str = Field("5m", pattern=r"^[1-9][0-9]*[smh]$", description="the PromQL range the ratios are taken over")
    on_accelerator: bool = Field(True, description="GPU targets: every replica runs on the target's first "
                                                   "execution provider (mlpack_execution_provider_info)")


class RenderGroup(_Strict):
    templates: ArtifactPath = Field(description="folder under templates/")
    into: FolderPath = Field("", description="folder in the artifact the rendered files go to")
    app: bool = Field(
        False,
        description="the serving app's entry point (service.py, handler.py): rendered into the app folder "
        "that a build step packages, not into the artifact",
    )


class Target(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    role: Literal["server", "edge", "lambda"]
    builds: list[Build] = Field(min_length=1)
    iac: list[str] = Field(default_factory=list, description="kinds of infrastructure code")
    platform: Platform
    runtime: Runtime
    image: Image
    optimize: Optimize
    serving: Serving = Serving()
    drift: Drift = Drift()
    kubernetes: Kubernetes = Kubernetes()
    slo: Slo = Slo()
    cuda: Cuda | None = Field(None, description="GPU targets: the CUDA libraries their images carry")
    render: list[RenderGroup] = Field(default_factory=list)

    @field_validator("render")
    @classmethod
    def _templates_exist(cls, groups: list[RenderGroup], info: ValidationInfo) -> list[RenderGroup]:
        if (info.context or {}).get("snapshot"):
            return groups  # a manifest's copy: checked as data, not against this installation
        root = data_dir("templates")
        missing = [g.templates for g in groups if not (root / g.templates).is_dir()]
        if missing:
            raise ValueError(f"no template folder {', '.join(missing)} under templates/")
        apps = [g.templates for g in groups if g.app]
        if len(apps) != 1:
            raise ValueError(f"exactly one group must be the app's entry point (app = true), found {len(apps)}")
        return groups

    @property
    def app_group(self) -> RenderGroup:
        """The templates of the serving app's entry point (Bento service or Lambda handler)."""
        return next(g for g in self.render if g.app)

    @property
    def artifact_groups(self) -> list[RenderGroup]:
        """The render groups that write into the artifact folder itself: the target's, and
        where it renders Kubernetes manifests, its autoscaler's and delivery engine's
        templates into their base (mlpack.render.delivery)."""
        groups = [g for g in self.render if not g.app]
        kubernetes = next((g for g in groups if g.templates == KUBERNETES_GROUP), None)
        if kubernetes is not None:
            k8s = self.kubernetes
            problems = choice_problems(k8s.autoscaler, k8s.delivery)
            if problems:  # a manifest written by another mlpack
                raise MlpackError(f"target {self.name}: {'; '.join(problems)} in this mlpack",
                                  "use the mlpack release that built the artifact, or rebuild it")
            base = f"{kubernetes.into}/{KUBERNETES_BASE}" if kubernetes.into else KUBERNETES_BASE
            groups += [RenderGroup(templates=t, into=base) for t in chosen_templates(k8s.autoscaler, k8s.delivery)]
        return groups

    @property
    def renders_kubernetes(self) -> bool:
        """Whether its manifests include the Kubernetes Deployment the autoscalers and engines extend."""
        return any(g.templates == KUBERNETES_GROUP for g in self.render)

    @property
    def is_gpu(self) -> bool:
        return self.runtime.onnxruntime == "onnxruntime-gpu"

    def with_serving(self, **overrides: Any) -> Target:
        """This target with some `[serving]` values replaced (`mlpack build --max-rows` and
        friends): what the manifest records, so the artifact carries the limits it serves with.
        Raises InputError naming the option of a value out of range."""
        return self._with_section("serving", overrides, lambda key: "--" + key.replace("_", "-"))

    def with_slo(self, **overrides: Any) -> Target:
        """This target with some `[slo]` values replaced (`mlpack build --slo KEY=VALUE`)."""
        return self._with_section("slo", overrides, lambda key: f"--slo {key}")

    def with_kubernetes(self, **overrides: Any) -> Target:
        """This target with its `[kubernetes]` choices replaced (`mlpack build --autoscaler`, `--delivery`)."""
        return self._with_section("kubernetes", overrides, lambda key: "--" + key.replace("_", "-"))

    def _with_section(self, section: str, overrides: dict[str, Any], option: Any) -> Target:
        changes = {key: value for key, value in overrides.items() if value is not None}
        if not changes:
            return self
        current = getattr(self, section)
        try:
            replaced = type(current).model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            item = exc.errors()[0]
            name = option(str(item["loc"][0])) if item["loc"] else f"[{section}]"
            raise InputError(f"{name}: {item['msg']}", f"see `mlpack build --help` for {name.split()[0]}") from exc
        return self.model_copy(update={section: replaced})

    def with_drift(self, **overrides: Any) -> Target:
        """This target with some `[drift]` values replaced (`mlpack build --drift KEY=VALUE`).
        Raises InputError naming the key of a value out of range."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(Drift.model_fields))
        if unknown:
            raise InputError(f"--drift {unknown[0]}: no such setting", f"drift keys are {', '.join(Drift.model_fields)}")
        try:
            drift = Drift.model_validate({**self.drift.model_dump(), **overrides})
        except ValidationError as exc:
            item = exc.errors()[0]
            raise InputError(f"--drift {item['loc'][0]}: {item['msg']}",
                             f"drift keys are {', '.join(Drift.model_fields)}") from exc
        return self.model_copy(update={"drift": drift})


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{key}: {item['msg']}")
    return "; ".join(parts)


def load_target_file(path: Path) -> Target:
    """Read and validate one target file, reporting every error in it at once."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MlpackError(f"cannot read target file {path}: {exc}") from exc
    problems: list[str] = []
    try:
        target = Target.model_validate(raw)
    except ValidationError as exc:
        raise MlpackError(
            f"invalid target file {path}: {_describe(exc)}", "fix the keys named above"
        ) from exc
    if target.name != path.stem:
        problems.append(f"name: {target.name!r} must match the file name {path.stem!r}")
    if problems:
        raise MlpackError(f"invalid target file {path}: {'; '.join(problems)}")
    return target


def target_files() -> dict[str, Path]:
    # By name: "aws-lambda" before "aws-lambda-arm64" (as paths, ".toml" sorts after "-").
    return {p.stem: p for p in sorted(data_dir("targets").glob("*.toml"), key=lambda p: p.stem)}


def known_targets() -> list[Target]:
    return [load_target_file(p) for p in target_files().values()]


def load_target(name: str) -> Target:
    files = target_files()
    if name not in files:
        raise InputError(
            f"unknown target {name!r}",
            f"choose one of: {', '.join(files)} (see `mlpack targets`)",
        )
    return load_target_file(files[name])
