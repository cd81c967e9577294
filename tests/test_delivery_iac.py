"""Every resource `--autoscaler` and `--delivery` can write, for every server target, validates
against the engine's own published schema and passes checkov.

The schemas are the CRDs of pinned releases of KServe, KEDA, Argo Rollouts and Flagger,
vendored under tests/crds/ (sources.json: repository, release tag, commit, path, sha256),
read with an OpenAPI 3.0 validator in which a field the schema does not list is an error (the
API server would drop it silently). Built-in kinds go through kubernetes-validate, the
Prometheus Operator's through its generated models, as in tests/test_iac.py, which validates
the default choice (hpa, none: the Deployment and KServe with CPU scaling) on the demo artifacts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlpack.render.iac import render_iac
from mlpack.render.templates import write_files

from .iac_support import iac_env, iac_tool, iac_tools, kubectl, requires_iac_venv, requires_kubectl
from .manifests import KUBERNETES_TARGETS, delivery_context, fixed_context

CRDS = Path(__file__).with_name("crds")
CHOICES = [("keda", "none"), ("hpa", "argo-rollouts"), ("keda", "argo-rollouts"), ("hpa", "flagger"),
           ("keda", "flagger")]
ENGINE_KINDS = {"InferenceService", "ScaledObject", "Rollout", "AnalysisTemplate", "Canary", "MetricTemplate"}
# checkov scans two targets (CPU and GPU): cuda12-gpu's manifests differ from cuda-gpu's only
# in the image, and each checkov run costs seconds.
CHECKOV_TARGETS = ["x86-cpu", "cuda-gpu"]
# kubectl kustomize for the choices that change the overlays (the staging patches of each
# autoscaler, with and without the Deployment's) and KServe's autoscaler, CPU and GPU.
KUSTOMIZE_CASES = [("x86-cpu", "keda", "argo-rollouts"), ("cuda-gpu", "hpa", "flagger")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<target>/<autoscaler>-<delivery>/iac/... for every server target and choice, and
    CHANGED listing the files that differ from the default render (validated there)."""
    root = tmp_path_factory.mktemp("delivery-iac")
    changed = []
    for target in KUBERNETES_TARGETS:
        default = render_iac(fixed_context(target))
        for autoscaler, delivery in CHOICES:
            folder = root / target / f"{autoscaler}-{delivery}"
            files = {p: t for p, t in render_iac(delivery_context(target, autoscaler, delivery)).items()
                     if p.startswith(("iac/kubernetes/", "iac/kserve/"))}
            write_files(folder, files)
            changed += [str(folder / p) for p, t in files.items() if default.get(p) != t]
    (root / "CHANGED").write_text("\n".join(changed))
    return root


def _changed_manifests(root: Path) -> list[Path]:
    return [Path(p) for p in (root / "CHANGED").read_text().splitlines() if not p.endswith("kustomization.yaml")]


def _kinds(labels: list[str]) -> set[str]:
    return {label.split(": ")[1].split("/")[0] for label in labels}


def test_the_vendored_crds_are_the_pinned_releases() -> None:
    sources = json.loads((CRDS / "sources.json").read_text())
    assert {s["engine"] for s in sources} == {"kserve", "keda", "argo-rollouts", "flagger"}
    for source in sources:
        data = gzip.decompress((CRDS / source["file"]).read_bytes())
        assert hashlib.sha256(data).hexdigest() == source["sha256"], source["file"]
        assert source["url"] == f"https://raw.githubusercontent.com/{source['repository'].removeprefix('https://github.com/')}" \
                                f"/{source['release']}/{source['path']}"
        assert len(source["commit"]) == 40
        kinds = {d["spec"]["names"]["kind"] for d in yaml.load_all(data, Loader=yaml.CSafeLoader) if d}
        assert kinds & ENGINE_KINDS, source["file"]
    assert sorted(p.name for p in CRDS.glob("*.gz")) == sorted(s["file"] for s in sources)


@requires_iac_venv
def test_every_resource_validates_against_its_engines_schema(rendered: Path) -> None:
    """Every file a choice writes or changes (the rest is the default render, validated on the
    demo artifacts by tests/test_iac.py)."""
    result = iac_tools("k8s-validate", *_changed_manifests(rendered))
    assert result["errors"] == []
    assert ENGINE_KINDS <= _kinds(result["validated"])


@requires_iac_venv
def test_the_schema_check_refuses_a_field_the_engine_does_not_know(rendered: Path, tmp_path: Path) -> None:
    """A misspelled field, one level down in each engine's resource, is an error naming it."""
    choice = rendered / "cuda-gpu" / "keda-argo-rollouts" / "iac"
    changes = {
        "kserve/inferenceservice.yaml": lambda d: d["spec"]["predictor"].update(minReplica=1),
        "kubernetes/base/scaledobject.yaml": lambda d: d["spec"]["triggers"][0].update(activationTreshold="1"),
        "kubernetes/base/rollout.yaml": lambda d: d["spec"]["strategy"]["canary"].update(step=[]),
        "kubernetes/base/analysistemplate.yaml": lambda d: d["spec"]["metrics"][0].update(succesCondition="x"),
    }
    broken = []
    for path, change in changes.items():
        document = yaml.safe_load((choice / path).read_text())
        change(document)
        broken.append(tmp_path / path.replace("/", "-"))
        broken[-1].write_text(yaml.safe_dump(document))
    flagger = yaml.safe_load((rendered / "x86-cpu" / "hpa-flagger" / "iac/kubernetes/base/canary.yaml").read_text())
    flagger["spec"]["analysis"]["stepWeight"] = "10"  # a string where a number belongs
    broken.append(tmp_path / "canary.yaml")
    broken[-1].write_text(yaml.safe_dump(flagger))
    errors = iac_tools("k8s-validate", *broken)["errors"]
    for field in ("minReplica", "activationTreshold", "'step'", "succesCondition", "'10' is not of type 'number'"):
        assert any(field in e for e in errors), (field, errors)
    assert {e.split(": ")[0] for e in errors} == {path.name for path in broken}


@requires_iac_venv
@requires_kubectl
def test_every_kustomization_builds_into_valid_resources(rendered: Path, tmp_path: Path) -> None:
    """The overlays and KServe's kustomization, built: what changes with each engine and autoscaler
    (the staging overlay's patches, KServe's autoscaler) on a CPU and a GPU target."""
    roots = sorted(p.parent for target, autoscaler, delivery in KUSTOMIZE_CASES
                   for p in (rendered / target / f"{autoscaler}-{delivery}").rglob("kustomization.yaml")
                   if "base" not in p.parent.parts)
    assert len(roots) == len(KUSTOMIZE_CASES) * 3  # staging, production, kserve
    outputs = []
    for n, folder in enumerate(roots):
        built = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, f"{folder}: {built.stderr}"
        outputs.append(tmp_path / f"{n}.yaml")
        outputs[-1].write_text(built.stdout)
    result = iac_tools("k8s-validate", *outputs)
    assert result["errors"] == []
    assert ENGINE_KINDS <= _kinds(result["validated"])


@requires_iac_venv
def test_checkov_finds_no_failed_check_in_any_choice(rendered: Path) -> None:
    # The Kubernetes framework on the files as written: checkov's kustomize framework mixes up
    # the bases of several artifacts scanned at once (tests/test_iac.py runs it on each demo).
    run = subprocess.run(
        [str(iac_tool("checkov")), "--skip-download", "--compact", "-o", "json", "--framework", "kubernetes",
         *[arg for target in CHECKOV_TARGETS for arg in ("-d", str(rendered / target))]],
        capture_output=True, text=True, timeout=300, env=iac_env(),
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]
    reports, decoder, at = [], json.JSONDecoder(), 0
    while run.stdout[at:].strip():  # one JSON document per -d
        report, end = decoder.raw_decode(run.stdout, at + len(run.stdout[at:]) - len(run.stdout[at:].lstrip()))
        reports += report if isinstance(report, list) else [report]
        at = end
    failed = [f"{c['check_id']} {c['check_name']} in {c['file_path']} ({c['resource']})"
              for r in reports for c in r["results"]["failed_checks"]]
    assert failed == []
    assert sum(r["summary"]["passed"] for r in reports) > 0 and all(r["summary"]["parsing_errors"] == 0 for r in reports)
