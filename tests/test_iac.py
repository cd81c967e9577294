"""The infrastructure code in every target's artifact is clean under the validators a
platform engineer already runs: checkov, cfn-lint (SAM and its CloudFormation
translation), kubernetes-validate (plus the Prometheus Operator CRD schemas), python-hcl2,
botocore's Greengrass v2 model, systemd-analyze.

The validators live in their own venv (checkov pins an old boto3): create it with
`.ci/iac-venv.sh`; MLPACK_IAC_VENV names another place. Tests that need it (or another
tool) skip when it is absent, and fail so under CI=true: `.ci/run` installs them all.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from mlpack.build import BuildResult
from mlpack.render.facts import server_memory_facts
from mlpack.render.context import RenderContext
from mlpack.targets import load_target, target_files

from .iac_support import (
    cfn_lint_errors,
    checkov,
    hcl_format_check,
    iac_tools,
    kubectl,
    requires_hcl2,
    requires_hcl_format,
    requires_iac_venv,
    requires_kubectl,
    systemd_verify,
)

TARGETS = sorted(target_files())
requires_systemd_analyze = pytest.mark.requires_tool("systemd-analyze", hint="apt-get install systemd")
# Which checkov framework must have scanned each kind of infrastructure code.
CHECKOV_FRAMEWORK = {
    "kubernetes": "kubernetes", "kserve": "kubernetes", "k3s": "kubernetes", "terraform-ecr": "terraform",
    "terraform-lambda": "terraform", "sam": "cloudformation",
}


def iac_dir(demo_artifact: Callable[[str], BuildResult], target: str) -> Path:
    return demo_artifact(target).path / "iac"


def kinds(target: str) -> list[str]:
    return load_target(target).iac


def _targets_with(kind: str) -> list[str]:
    return [t for t in TARGETS if kind in kinds(t)]


def test_every_target_writes_each_of_its_iac_kinds(demo_artifact) -> None:
    for target in TARGETS:
        written = sorted(p.name for p in iac_dir(demo_artifact, target).iterdir())
        assert written == sorted(kinds(target)), target


# --- checkov -------------------------------------------------------------------------

@requires_iac_venv
@pytest.mark.parametrize("target", TARGETS)
def test_checkov_finds_no_failed_check(demo_artifact, target: str) -> None:
    reports = checkov(iac_dir(demo_artifact, target))
    failed = [
        f"{r['check_type']}: {c['check_id']} {c['check_name']} in {c['file_path']} ({c['resource']})"
        for r in reports for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == []
    scanned = {r["check_type"] for r in reports if r.get("summary", {}).get("passed", 0) > 0}
    expected = {CHECKOV_FRAMEWORK[k] for k in kinds(target) if k in CHECKOV_FRAMEWORK}
    if kubectl() and {"kubernetes", "k3s"} & set(kinds(target)):
        expected.add("kustomize")  # the built overlays, not only the raw files
    assert expected <= scanned, f"checkov did not scan {expected - scanned}"
    for report in reports:
        for skipped in report.get("results", {}).get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment") or skipped.get("suppress_comment", "")
            assert len(reason) > 20, f"{skipped['check_id']} is skipped without a written reason"


# --- CloudFormation / SAM --------------------------------------------------------------

@requires_iac_venv
@pytest.mark.parametrize("target", _targets_with("sam"))
def test_cfn_lint_passes_the_sam_template_and_its_cloudformation(demo_artifact, target: str, tmp_path: Path) -> None:
    template = iac_dir(demo_artifact, target) / "sam" / "template.yaml"
    assert cfn_lint_errors(template) == []
    plain = tmp_path / "cloudformation.json"
    result = iac_tools("sam-translate", template, plain)
    assert {"AWS::Lambda::Function", "AWS::Lambda::Url", "AWS::ECR::Repository", "AWS::SQS::Queue",
            "AWS::Logs::LogGroup", "AWS::IAM::Role", "AWS::KMS::Key"} <= set(result["resources"])
    assert cfn_lint_errors(plain) == []
    reports = checkov(plain.parent)
    assert [c["check_id"] for r in reports for c in r["results"]["failed_checks"]] == []


@requires_iac_venv
@pytest.mark.parametrize("target", _targets_with("sam"))
def test_sam_function_is_least_privilege_and_bounded(demo_artifact, target: str, tmp_path: Path) -> None:
    plain = tmp_path / "cloudformation.json"
    iac_tools("sam-translate", iac_dir(demo_artifact, target) / "sam" / "template.yaml", plain)
    resources = json.loads(plain.read_text())["Resources"]
    by_type = {r["Type"]: r["Properties"] for r in resources.values()}
    function = by_type["AWS::Lambda::Function"]
    built = demo_artifact(target).manifest
    assert function["MemorySize"] == built.memory_mb
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert "ReservedConcurrentExecutions" in function and "DeadLetterConfig" in function
    assert by_type["AWS::Lambda::Url"]["AuthType"] == "AWS_IAM"
    repository = by_type["AWS::ECR::Repository"]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert "RetentionInDays" in by_type["AWS::Logs::LogGroup"]
    # No wildcard action, and "*" resources only for X-Ray, whose actions take none.
    statements = [s for p in by_type["AWS::IAM::Role"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any("*" in a for a in actions), statement
        if statement["Resource"] == "*":
            assert all(a.startswith("xray:") for a in actions), statement
    # Before `mlpack push` the function ships as the artifact's zip.
    assert function["PackageType"] == "Zip" and function["Runtime"] == f"python{load_target(target).platform.python_version}"


# --- Kubernetes ------------------------------------------------------------------------

def _manifests(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml"))


@requires_iac_venv
@pytest.mark.parametrize("target", _targets_with("kubernetes") + _targets_with("k3s"))
def test_kubernetes_validate_accepts_every_manifest(demo_artifact, target: str) -> None:
    root = iac_dir(demo_artifact, target)
    folders = [root / k for k in ("kubernetes", "kserve", "k3s") if k in kinds(target)]
    result = iac_tools("k8s-validate", *[p for f in folders for p in _manifests(f)])
    assert result["errors"] == []
    validated_kinds = {label.split(": ")[1].split("/")[0] for label in result["validated"]}
    if "kubernetes" in kinds(target):
        assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                "ServiceAccount", "PodMonitor", "PrometheusRule"} <= validated_kinds
    if "kserve" in kinds(target):
        assert "InferenceService" in validated_kinds
    if "k3s" in kinds(target):
        assert "DaemonSet" in validated_kinds
    assert all("Kustomization" in s for s in result["skipped"])


@requires_iac_venv
@requires_kubectl
@pytest.mark.parametrize("target", _targets_with("kubernetes") + _targets_with("k3s"))
def test_kustomize_builds_every_overlay_into_valid_manifests(demo_artifact, target: str, tmp_path: Path) -> None:
    root = iac_dir(demo_artifact, target)
    roots = sorted(p.parent for p in root.rglob("kustomization.yaml") if "base" not in p.parent.parts)
    assert roots
    outputs = []
    for folder in roots:
        built = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, built.stderr
        documents = list(yaml.safe_load_all(built.stdout))
        namespaces = {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"}
        assert namespaces == {d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"}, folder
        outputs.append(tmp_path / f"{folder.name}.yaml")
        outputs[-1].write_text(built.stdout)
    result = iac_tools("k8s-validate", *outputs)
    assert result["errors"] == [] and result["validated"]


def _pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    workload = next(d for d in documents if d["kind"] in ("Deployment", "DaemonSet"))
    return workload["spec"]["template"]["spec"]


def _load_all(folder: Path) -> list[dict[str, Any]]:
    return [d for p in _manifests(folder) for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.mark.parametrize("target", _targets_with("kubernetes") + _targets_with("k3s"))
def test_pods_are_locked_down_with_the_agent_sidecar(demo_artifact, target: str) -> None:
    folder = iac_dir(demo_artifact, target) / ("kubernetes" if "kubernetes" in kinds(target) else "k3s")
    spec = _pod(_load_all(folder))
    t = load_target(target)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["nodeSelector"]["kubernetes.io/arch"] == t.platform.oci.split("/")[1]
    model, agent = spec["containers"]
    built = demo_artifact(target).manifest
    assert model["image"] == agent["image"] == f"{built.image.repository}:{built.image.tag}"
    assert agent["command"][:3] == ["python3", "-m", "mlpack_agent.main"]
    for container in (model, agent):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"] and container["resources"]["requests"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert model[probe]["httpGet"]["path"] == t.serving.health_path
    # BentoML at rest, the sessions and max_concurrency requests at their stated peak (docs/serving.md).
    limit = server_memory_facts(RenderContext.from_manifest(built)).limit_mb
    assert model["resources"]["limits"]["memory"] == model["resources"]["requests"]["memory"] == f"{limit}Mi"
    if t.kubernetes.gpus:
        assert model["resources"]["limits"]["nvidia.com/gpu"] == t.kubernetes.gpus
        assert {x["key"] for x in spec["tolerations"]} == {x.key for x in t.kubernetes.tolerations}
    else:
        assert "nvidia.com/gpu" not in model["resources"]["limits"] and "tolerations" not in spec


# --- Terraform -------------------------------------------------------------------------

def _terraform_folders(demo_artifact, target: str) -> list[Path]:
    return [p for p in iac_dir(demo_artifact, target).iterdir() if list(p.glob("*.tf"))]


def _block(parsed: dict[str, Any], kind: str, type_: str) -> dict[str, Any]:
    for item in parsed.get(kind, []):
        if type_ in item:
            return next(iter(item[type_].values()))
    raise AssertionError(f"no {kind} {type_}")


@requires_hcl2
@pytest.mark.parametrize("target", _targets_with("terraform-ecr") + _targets_with("terraform-lambda"))
def test_python_hcl2_parses_every_terraform_file(demo_artifact, target: str) -> None:
    import hcl2

    for folder in _terraform_folders(demo_artifact, target):
        files = sorted(folder.glob("*.tf"))
        assert {f.name for f in files} == {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
        parsed = {f.name: hcl2.loads(f.read_text(encoding="utf-8")) for f in files}
        main = parsed["main.tf"]
        ecr = _block(main, "resource", "aws_ecr_repository")
        assert ecr["image_tag_mutability"] == "IMMUTABLE"
        assert ecr["image_scanning_configuration"][0]["scan_on_push"] is True
        assert ecr["encryption_configuration"][0]["encryption_type"] == "KMS"
        if folder.name == "terraform-lambda":
            assert _block(main, "resource", "aws_lambda_function_url")["authorization_type"] == "AWS_IAM"
            assert _block(main, "resource", "aws_cloudwatch_log_group")["retention_in_days"] == "${var.log_retention_days}"
            variables = {k: v for item in parsed["variables.tf"]["variable"] for k, v in item.items()}
            assert variables["memory_size"]["default"] == demo_artifact(target).manifest.memory_mb
            assert variables["image_uri"]["default"] == "", "before `mlpack push` the function ships as the zip"


@requires_hcl_format
@pytest.mark.parametrize("target", _targets_with("terraform-ecr") + _targets_with("terraform-lambda"))
def test_terraform_files_are_formatted(demo_artifact, target: str) -> None:
    """As `terraform fmt -check` would say: the formatter is hclwrite.Format, which terraform
    fmt runs (without its two legacy rewrites: quoted types, interpolation-only strings)."""
    files = [f for folder in _terraform_folders(demo_artifact, target) for f in sorted(folder.glob("*.tf"))]
    assert files
    run = hcl_format_check(*files)
    assert run.returncode == 0, run.stdout + run.stderr


@requires_hcl_format
def test_the_hcl_format_check_finds_a_misaligned_file(tmp_path: Path) -> None:
    good = tmp_path / "good.tf"
    good.write_text('resource "aws_ecr_repository" "r" {\n  name                 = "m"\n  image_tag_mutability = "IMMUTABLE"\n}\n')
    bad = tmp_path / "bad.tf"
    bad.write_text('resource "aws_ecr_repository" "r" {\n  name = "m"\n  image_tag_mutability = "IMMUTABLE"\n}\n')
    assert hcl_format_check(good).returncode == 0
    run = hcl_format_check(good, bad)
    assert run.returncode == 1 and run.stdout.startswith(f"{bad}:2: not formatted"), run.stdout + run.stderr


# --- Greengrass v2 ---------------------------------------------------------------------

def _greengrass_client():
    import botocore.session
    from botocore.stub import Stubber

    session = botocore.session.get_session()
    client = session.create_client("greengrassv2", region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
    return client, Stubber(client)


RECIPE_LIFECYCLE_STEPS = {"Setenv", "Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover"}
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-.]+)?$")


@pytest.mark.parametrize("target", _targets_with("greengrass"))
def test_greengrass_recipes_and_deployment_validate_against_the_api_model(demo_artifact, target: str) -> None:
    folder = iac_dir(demo_artifact, target) / "greengrass"
    client, stubber = _greengrass_client()
    recipes = {}
    for path in sorted(folder.glob("*recipe.yaml")):
        raw = path.read_bytes()
        recipe = yaml.safe_load(raw)
        recipes[recipe["ComponentName"]] = recipe["ComponentVersion"]
        stubber.add_response(
            "create_component_version",
            {"componentName": recipe["ComponentName"], "componentVersion": recipe["ComponentVersion"],
             "creationTimestamp": "2026-01-01T00:00:00Z", "status": {"componentState": "REQUESTED"}},
            {"inlineRecipe": raw},
        )
        # The recipe format (docs: component recipe reference).
        assert recipe["RecipeFormatVersion"] == "2020-01-25"
        assert SEMVER.match(recipe["ComponentVersion"]), recipe["ComponentVersion"]
        for manifest in recipe["Manifests"]:
            assert manifest["Platform"] == {"os": "linux", "architecture": "aarch64"}
            assert set(manifest["Lifecycle"]) <= RECIPE_LIFECYCLE_STEPS
            for artifact in manifest["Artifacts"]:
                assert artifact["URI"].split(":", 1)[0] in ("s3", "docker", "greengrass")
            run = manifest["Lifecycle"]["Run"]["Script"]
            for flag in ("--read-only", "--cap-drop ALL", "--security-opt no-new-privileges", "--user 10001:10001"):
                assert flag in run, f"{path.name}: docker run lacks {flag}"
        for dep in recipe.get("ComponentDependencies", {}).values():
            assert dep["DependencyType"] in ("HARD", "SOFT")
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    stubber.add_response("create_deployment", {"deploymentId": "d-1"})
    with stubber:
        for path in sorted(folder.glob("*recipe.yaml")):
            client.create_component_version(inlineRecipe=path.read_bytes())
        # botocore validates every parameter (names, types, ranges) before the stub answers.
        client.create_deployment(targetArn="arn:aws:iot:us-east-1:123456789012:thinggroup/edge", **deployment)
    assert {n: c["componentVersion"] for n, c in deployment["components"].items()} == recipes
    job = deployment["iotJobConfiguration"]
    assert job["jobExecutionsRolloutConfig"]["exponentialRate"]["incrementFactor"] > 1
    assert job["abortConfig"]["criteriaList"] and job["timeoutConfig"]["inProgressTimeoutInMinutes"] > 0
    assert deployment["deploymentPolicies"]["failureHandlingPolicy"] == "ROLLBACK"


@pytest.mark.parametrize("target", _targets_with("greengrass"))
def test_greengrass_scripts_are_valid_shell(demo_artifact, target: str) -> None:
    for path in sorted((iac_dir(demo_artifact, target) / "greengrass").glob("*recipe.yaml")):
        for manifest in yaml.safe_load(path.read_text())["Manifests"]:
            for step in manifest["Lifecycle"].values():
                # Greengrass replaces {configuration:/Key} before running the script.
                script = re.sub(r"\{configuration:/\w+\}", "127.0.0.1", step["Script"])
                run = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
                assert run.returncode == 0, f"{path.name}: {run.stderr}"


def test_greengrass_rejects_a_malformed_deployment() -> None:
    """The API-model check can fail: a misspelled key or a wrong type is caught."""
    from botocore.exceptions import ParamValidationError

    client, stubber = _greengrass_client()
    stubber.add_response("create_deployment", {"deploymentId": "d-1"})
    with stubber, pytest.raises(ParamValidationError, match="thresholdPercent"):
        client.create_deployment(targetArn="arn:aws:iot:us-east-1:123456789012:thinggroup/edge",
                                 iotJobConfiguration={"abortConfig": {"criteriaList": [{"thresholdPercent": "x"}]}})


# --- systemd ---------------------------------------------------------------------------

@requires_systemd_analyze
@pytest.mark.parametrize("target", _targets_with("systemd"))
def test_systemd_units_verify_and_are_hardened(demo_artifact, target: str) -> None:
    units = sorted((iac_dir(demo_artifact, target) / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["mlpack-agent.service", "mlpack-model.service"]
    assert systemd_verify(units) == []
    for unit in units:
        security = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
                                  capture_output=True, text=True)
        exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
        assert exposure, security.stdout + security.stderr
        assert float(exposure.group(1)) <= 2.0, f"{unit.name}: exposure {exposure.group(1)}\n{security.stdout}"
        text = unit.read_text()
        for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes", "CapabilityBoundingSet=\n"):
            assert setting in text, f"{unit.name} lacks {setting.strip()}"


@requires_systemd_analyze
@pytest.mark.parametrize("target", _targets_with("systemd"))
def test_systemd_units_verify_for_the_longest_model_name(target: str, tmp_path: Path) -> None:
    from mlpack.render.iac import render_iac
    from mlpack.render.templates import write_files

    from .manifests import fixed_context

    ctx = fixed_context(target).model_copy(update={"name": "m" * 40})
    write_files(tmp_path, {p: t for p, t in render_iac(ctx).items() if p.endswith(".service")})
    assert systemd_verify(sorted(tmp_path.rglob("*.service"))) == []


@pytest.mark.parametrize("target", _targets_with("kubernetes") + _targets_with("k3s"))
def test_kubernetes_names_fit_dns_labels_for_the_longest_model_name(target: str) -> None:
    from mlpack.render.iac import render_iac

    from .manifests import fixed_context

    ctx = fixed_context(target).model_copy(update={"name": "m" * 40})
    label = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    for path, text in render_iac(ctx).items():
        if not path.endswith(".yaml") or "/greengrass/" in path:
            continue
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict):
                continue
            names = [doc.get("namespace"), *(doc.get("metadata") or {}).get("name", "").split()[:1],
                     (doc.get("metadata") or {}).get("namespace")]
            for name in filter(None, names):
                assert label.match(name), f"{path}: {name!r} is not a DNS label (63 characters at most)"
