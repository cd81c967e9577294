"""What the generated files say is decided in mlpack.render.facts: these tests read as its spec.

The templates only format these facts; tests/test_golden.py pins how they are written.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from mlpack_agent.config import BufferConfig, OtlpConfig, PrometheusConfig
from mlpack_agent.protocol import DEFAULT_SOCKET

from mlpack.render.facts import (
    agent_facts,
    container_facts,
    greengrass_facts,
    kubernetes_facts,
    lambda_facts,
    monitoring_facts,
    systemd_facts,
    template_facts,
)
from mlpack.manifest import ImageSection
from mlpack.render.context import RenderContext
from mlpack.render.templates import render_artifact
from mlpack.targets import target_files

from .manifests import fixed_context

TARGETS = sorted(target_files())
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/golden-model-aws-lambda"
DIGEST = "sha256:" + "e" * 64
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")


def context(target: str, **update: object) -> RenderContext:
    return fixed_context(target).model_copy(update=update)


def on_platform(target: str, **platform: str) -> RenderContext:
    ctx = fixed_context(target)
    moved = ctx.target.model_copy(update={"platform": ctx.target.platform.model_copy(update=platform)})
    return ctx.model_copy(update={"target": moved})


# -- images -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["x86-cpu", "arm-edge", "cuda-gpu"])
def test_serving_images_are_distroless_gpu_ones_too(target: str) -> None:
    # GPU images carry CUDA as wheels inside site-packages, which the copy takes whole.
    assert container_facts(context(target)).distroless


def test_an_image_on_a_base_whose_libraries_it_relies_on_keeps_that_base() -> None:
    ctx = context("cuda-gpu")
    on_cuda_base = ctx.target.model_copy(update={"image": ctx.target.image.model_copy(update={
        "base": "nvidia/cuda:13.0.1-runtime-ubuntu24.04", "provides_libraries": ["libcudart.so.13"]})})
    assert not container_facts(ctx.model_copy(update={"target": on_cuda_base})).distroless


def test_cpu_images_have_no_cuda_facts() -> None:
    assert all(container_facts(context(t)).cuda is None for t in TARGETS if not t.startswith("cuda"))


def test_a_gpu_image_finds_cuda_in_its_wheels_then_where_clusters_mount_the_driver() -> None:
    cuda = container_facts(context("cuda-gpu")).cuda
    assert cuda.library_path.split(":") == ["/opt/mlpack/site-packages/nvidia/cu13/lib",
                                            "/opt/mlpack/site-packages/nvidia/cudnn/lib", "/usr/local/nvidia/lib64"]
    assert cuda.from_host == ("libcuda.so.1",)
    assert cuda.check[0] == "onnxruntime/capi/libonnxruntime_providers_cuda.so"


def test_a_gpu_image_carries_cudnn_only_for_operators_that_call_it() -> None:
    gemm = container_facts(context("cuda-gpu", model=context("cuda-gpu").model.model_copy(
        update={"operators": ["Gemm", "MatMul", "Relu", "Softmax"]}))).cuda
    assert gemm.cudnn_keep == () and gemm.cudnn_dir == "" and gemm.check == (gemm.check[0],)
    encoder = container_facts(context("cuda-gpu", model=context("cuda-gpu").model.model_copy(
        update={"operators": ["LayerNormalization", "MatMul", "ReduceSum"]}))).cuda
    assert encoder.cudnn_keep == ("libcudnn.so.9", "libcudnn_graph.so.9", "libcudnn_ops.so.9")
    assert encoder.check[1:] == tuple(f"nvidia/cudnn/lib/{lib}" for lib in encoder.cudnn_keep)
    conv = container_facts(context("cuda-gpu", model=context("cuda-gpu").model.model_copy(
        update={"operators": ["Conv", "Relu"]}))).cuda
    assert "libcudnn_cnn.so.9" in conv.cudnn_keep and "libcudnn_adv.so.9" not in conv.cudnn_keep


def test_images_run_as_one_unprivileged_user_and_group() -> None:
    facts = container_facts(context("x86-cpu"))
    assert facts.uid == facts.gid == 10001
    assert facts.user == "10001:10001"


def test_the_agent_sidecar_runs_with_the_configuration_the_server_image_holds() -> None:
    facts = container_facts(context("x86-cpu"))
    assert facts.agent_command[:3] == ("python3", "-m", "mlpack_agent.main")
    assert facts.agent_command[-2:] == ("--config", facts.agent_config)


# -- the agent and its monitoring -----------------------------------------------------------

@pytest.mark.parametrize("target", ["x86-cpu", "cuda-gpu", "arm-edge"])
def test_server_and_edge_agents_are_configured_as_the_agent_defaults(target: str) -> None:
    facts = agent_facts(context(target))
    assert facts.prometheus_enabled
    assert (facts.port, facts.socket) == (PrometheusConfig().port, DEFAULT_SOCKET)
    assert (facts.buffer_dir, facts.buffer_max_bytes) == (BufferConfig().dir, BufferConfig().max_bytes)
    assert facts.otlp_interval_s == OtlpConfig().interval_s


def test_a_lambda_agent_is_not_scraped_and_buffers_little_in_tmp() -> None:
    facts = agent_facts(context("aws-lambda"))
    assert not facts.prometheus_enabled
    assert facts.buffer_dir.startswith("/tmp/")
    assert facts.buffer_max_bytes < agent_facts(context("x86-cpu")).buffer_max_bytes
    assert facts.otlp_interval_s < agent_facts(context("x86-cpu")).otlp_interval_s


def test_the_buffer_lies_in_the_agent_state_folder() -> None:
    for target in TARGETS:
        facts = agent_facts(context(target))
        assert facts.buffer_dir.startswith(facts.state_dir + "/")


def test_servers_alert_on_a_tighter_latency_objective_than_edge_and_lambda() -> None:
    limits = {t: {o.alert: o.max for o in monitoring_facts(context(t)).objectives}["MlpackHighLatency"]
              for t in TARGETS}
    assert limits["x86-cpu"] == limits["cuda-gpu"] == 0.5
    assert limits["arm-edge"] == limits["aws-lambda"] == 1.0


def test_alerts_and_dashboard_select_the_artifact_service() -> None:
    facts = monitoring_facts(context("x86-cpu"))
    assert facts.selector == 'service_name="golden-model-x86-cpu"'
    assert facts.dashboard_selector == 'service_name="golden-model-x86-cpu", instance=~"$instance"'


def test_dashboard_uids_have_at_most_40_characters() -> None:
    assert monitoring_facts(context("x86-cpu")).dashboard_uid == "mlpack-golden-model-x86-cpu"
    long = monitoring_facts(context("x86-cpu", name="m" * 60)).dashboard_uid
    assert len(long) == 40 and long.startswith("mlpack-mmm")


# -- AWS Lambda ---------------------------------------------------------------------------

def test_a_lambda_function_uses_its_image_only_once_a_digest_in_ecr_is_recorded() -> None:
    tagged_in_ecr = ImageSection(repository=ECR, tag="t")
    pushed_elsewhere = ImageSection(repository="registry.example.com/ml/m", tag="t", digest=DIGEST)
    pushed_to_ecr = ImageSection(repository=ECR, tag="t", digest=DIGEST)
    assert not lambda_facts(context("aws-lambda", image=tagged_in_ecr)).use_image
    assert not lambda_facts(context("aws-lambda", image=pushed_elsewhere)).use_image
    facts = lambda_facts(context("aws-lambda", image=pushed_to_ecr))
    assert facts.use_image
    assert facts.image_uri == f"{ECR}@{DIGEST}"


def test_a_zip_function_has_no_image_uri() -> None:
    assert lambda_facts(context("aws-lambda")).image_uri == ""


def test_the_function_runs_the_target_python_on_its_architecture() -> None:
    facts = lambda_facts(context("aws-lambda"))
    assert (facts.runtime, facts.architecture, facts.handler) == ("python3.12", "x86_64", "handler.handler")
    assert lambda_facts(on_platform("aws-lambda", arch="aarch64", oci="linux/arm64")).architecture == "arm64"


def test_lambda_checks_that_do_not_apply_are_skipped_with_a_reason_per_package() -> None:
    zip_skips = {s.check: s.reason for s in lambda_facts(context("aws-lambda")).checkov_skips}
    image = ImageSection(repository=ECR, tag="t", digest=DIGEST)
    image_skips = {s.check: s.reason for s in lambda_facts(context("aws-lambda", image=image)).checkov_skips}
    assert set(zip_skips) == set(image_skips) == {"CKV_AWS_117", "CKV_AWS_272"}
    assert "mlpack verify" in zip_skips["CKV_AWS_272"]
    assert "image digest" in image_skips["CKV_AWS_272"]


def test_the_log_group_is_the_one_lambda_writes_to() -> None:
    assert lambda_facts(context("aws-lambda")).log_group == "/aws/lambda/golden-model-aws-lambda"


# -- Kubernetes -----------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "arch"), [("x86-cpu", "amd64"), ("cuda-gpu", "amd64"), ("arm-edge", "arm64")])
def test_pods_are_scheduled_on_nodes_of_the_image_platform(target: str, arch: str) -> None:
    assert kubernetes_facts(context(target)).arch == arch


def test_the_autoscaler_ceiling_is_never_below_its_floor() -> None:
    ctx = fixed_context("x86-cpu")
    squeezed = ctx.target.model_copy(update={"kubernetes": ctx.target.kubernetes.model_copy(
        update={"min_replicas": 3, "max_replicas": 1})})
    facts = kubernetes_facts(ctx.model_copy(update={"target": squeezed}))
    assert (facts.min_replicas, facts.max_replicas) == (3, 3)


def test_the_digest_pinning_check_is_skipped_only_until_a_digest_is_recorded() -> None:
    assert [s.check for s in kubernetes_facts(context("x86-cpu")).checkov_skips] == ["CKV_K8S_43"]
    pushed = ImageSection(repository="registry.example.com/ml/m", tag="t", digest=DIGEST)
    assert kubernetes_facts(context("x86-cpu", image=pushed)).checkov_skips == ()


# -- systemd --------------------------------------------------------------------------------

def test_systemd_user_names_are_at_most_31_characters() -> None:
    assert systemd_facts(context("arm-edge")).user == "mlpack-golden-model"
    for name in ("m" * 63, "m" * 23 + "-" + "n" * 20):
        user = systemd_facts(context("arm-edge", name=name)).user
        assert len(user) <= 31 and not user.endswith("-"), user


def test_systemd_units_run_the_current_version_under_the_artifact_home() -> None:
    facts = systemd_facts(context("arm-edge"))
    assert facts.home == "/opt/mlpack/golden-model-arm-edge"
    assert facts.app == facts.home + "/current"
    assert facts.venv == facts.home + "/venv"
    assert (facts.run_dir, facts.agent_state_dir) == ("mlpack-golden-model-arm-edge", "mlpack-golden-model-arm-edge-agent")


# -- Greengrass -----------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.1.0", "0.0.0-golden", "1.2.3-rc1+local.5", "2.0.0+abc"])
def test_component_versions_are_semantic_versions_of_the_release_and_the_model(version: str) -> None:
    facts = greengrass_facts(context("arm-edge", mlpack_version=version))
    assert SEMVER.match(facts.version), facts.version
    assert facts.version == version.split("-")[0].split("+")[0] + "-m" + "a" * 12


def test_the_model_component_wants_the_agent_of_its_own_version_softly() -> None:
    facts = greengrass_facts(context("arm-edge"))
    agent = [d for d in facts.dependencies if d.name == facts.agent_component]
    assert [(d.version_requirement, d.dependency_type) for d in agent] == [(f"={facts.version}", "SOFT")]
    assert facts.agent_dependencies == tuple(d for d in facts.dependencies if d.name != facts.agent_component)
    assert all(d.dependency_type == "HARD" for d in facts.agent_dependencies)


def test_components_and_containers_are_named_after_the_artifact() -> None:
    facts = greengrass_facts(context("arm-edge"))
    assert (facts.component, facts.agent_component) == ("dev.mlpack.golden-model-arm-edge", "dev.mlpack.golden-model-arm-edge.agent")
    assert (facts.container, facts.agent_container) == ("mlpack-golden-model-arm-edge", "mlpack-golden-model-arm-edge-agent")
    assert facts.run_dir.startswith(facts.state_dir + "/") and facts.agent_buffer_dir.startswith(facts.state_dir + "/")
    assert facts.socket.startswith(facts.socket_dir + "/")  # the run_dir both containers mount


def test_greengrass_platform_follows_the_target_architecture() -> None:
    assert greengrass_facts(context("arm-edge")).architecture == "aarch64"
    assert greengrass_facts(on_platform("arm-edge", arch="x86_64", oci="linux/amd64")).architecture == "amd64"


def test_greengrass_containers_run_unprivileged_and_read_only() -> None:
    flags = greengrass_facts(context("arm-edge")).docker_hardening
    assert {"--read-only", "no-new-privileges"} <= set(flags)
    assert flags[flags.index("--cap-drop") + 1] == "ALL"
    assert flags[flags.index("--user") + 1] == container_facts(context("arm-edge")).user


# -- the whole ------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_facts_are_computed_for_every_target_and_frozen(target: str) -> None:
    facts = template_facts(context(target))
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.agent.port = 1  # type: ignore[misc]
    assert facts.short_sha == "a" * 12


@pytest.mark.parametrize("target", TARGETS)
def test_shared_values_have_one_definition(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Change a shared value in mlpack.render.facts and no rendered file keeps the old one."""
    import mlpack.render.facts

    old = {"AGENT_PORT": "9464", "SERVICE_UID": "10001", "AGENT_SOCKET": "/tmp/mlpack-agent/agent.sock",
           "AGENT_STATE_DIR": "/var/lib/mlpack-agent"}
    monkeypatch.setattr(mlpack.render.facts, "AGENT_PORT", 12121)
    monkeypatch.setattr(mlpack.render.facts, "SERVICE_UID", 20002)
    monkeypatch.setattr(mlpack.render.facts, "SERVICE_USER", "20002:20002")
    monkeypatch.setattr(mlpack.render.facts, "AGENT_SOCKET", "/tmp/other.sock")
    monkeypatch.setattr(mlpack.render.facts, "AGENT_STATE_DIR", "/var/lib/other-agent")
    for path, text in render_artifact(context(target)).items():
        for name, value in old.items():
            assert value not in text, f"{path} still writes {name} = {value}"
