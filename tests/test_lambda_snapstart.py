"""SnapStart: `--snapstart` renders SAM's SnapStart with an alias and Terraform's snap_start
block, both clean under cfn-lint, checkov and python-hcl2; the handler's runtime hooks run
under awslambdaric as Lambda runs them (before the snapshot, the restore, then a correct
answer); and an image function never asks for it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpack.render.context import RenderContext

from mlpack.render.templates import render_artifact, write_files
from mlpack.runtime import snapstart

from .iac_support import (cfn_lint_errors, checkov, hcl_format_check, iac_tools, requires_hcl2, requires_hcl_format,
                          requires_iac_venv)
from .manifests import render_context
from .demo_data import demo_rows
from .served_apps import LambdaRuntime

TARGETS = ["aws-lambda", "aws-lambda-arm64"]


def snapstart_context(target: str) -> RenderContext:
    return render_context(target, "digits").model_copy(update={"snapstart": True})


def rendered_iac(ctx: RenderContext, root: Path) -> Path:
    write_files(root, render_artifact(ctx, [g for g in ctx.target.artifact_groups if g.into.startswith("iac/")]))
    return root / "iac"


def sam_function(iac: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags
    template = yaml.load((iac / "sam" / "template.yaml").read_text(), Loader=Loader)
    return template["Resources"]["Function"]["Properties"]


@pytest.mark.parametrize("target", TARGETS)
def test_snapstart_renders_published_versions_behind_an_alias(target: str, tmp_path: Path) -> None:
    function = sam_function(rendered_iac(snapstart_context(target), tmp_path))
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert function["AutoPublishAlias"] == "live"
    plain = sam_function(rendered_iac(render_context(target, "digits"), tmp_path / "plain"))
    assert "SnapStart" not in plain and "AutoPublishAlias" not in plain


def test_an_image_function_never_asks_for_snapstart(tmp_path: Path) -> None:
    from mlpack.manifest import ImageSection

    image = ImageSection(repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/digits-aws-lambda",
                         tag="0.1.0-aaaaaaaaaaaa", digest="sha256:" + "1" * 64)
    iac = rendered_iac(snapstart_context("aws-lambda").model_copy(update={"image": image}), tmp_path)
    assert "SnapStart" not in sam_function(iac)
    assert "snap_start" not in (iac / "terraform-lambda" / "main.tf").read_text()


@requires_iac_venv
@pytest.mark.parametrize("target", TARGETS)
def test_the_snapstart_sam_template_passes_cfn_lint_andcheckov(target: str, tmp_path: Path) -> None:
    iac = rendered_iac(snapstart_context(target), tmp_path / "artifact")
    template = iac / "sam" / "template.yaml"
    assert cfn_lint_errors(template) == []
    plain = tmp_path / "cloudformation" / "cloudformation.json"
    plain.parent.mkdir()
    result = iac_tools("sam-translate", template, plain)
    assert {"AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Lambda::Url"} <= set(result["resources"])
    resources = json.loads(plain.read_text())["Resources"].values()
    function = next(r["Properties"] for r in resources if r["Type"] == "AWS::Lambda::Function")
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    url = next(r["Properties"] for r in resources if r["Type"] == "AWS::Lambda::Url")
    # The URL serves the alias, so the latest snapshotted version.
    alias = next(k for k, r in json.loads(plain.read_text())["Resources"].items() if r["Type"] == "AWS::Lambda::Alias")
    assert url["TargetFunctionArn"] == {"Ref": alias}
    assert cfn_lint_errors(plain) == []
    for folder in (iac, plain.parent):
        failed = [c["check_id"] for r in checkov(folder) for c in r.get("results", {}).get("failed_checks", [])]
        assert failed == [], folder


@requires_hcl2
@pytest.mark.parametrize("target", TARGETS)
def test_the_snapstart_terraform_has_the_block_an_alias_and_parses(target: str, tmp_path: Path) -> None:
    import hcl2

    main = hcl2.loads((rendered_iac(snapstart_context(target), tmp_path) / "terraform-lambda" / "main.tf").read_text())
    resources = {k: v for item in main["resource"] for k, v in item.items()}
    function = resources["aws_lambda_function"]["model"]
    assert function["publish"] == "${!local.use_image}"
    snap = function["dynamic"][0]["snap_start"]
    assert snap["content"][0]["apply_on"] == "${snap_start.value}"
    assert "PublishedVersions" in snap["for_each"]
    assert resources["aws_lambda_alias"]["live"]["name"] == "live"
    assert resources["aws_lambda_function_url"]["model"]["qualifier"] == "${aws_lambda_alias.live.name}"


@requires_iac_venv
@requires_hcl_format
def test_the_snapstart_terraform_passes_checkov_and_fmt(tmp_path: Path) -> None:
    folder = rendered_iac(snapstart_context("aws-lambda"), tmp_path) / "terraform-lambda"
    failed = [c["check_id"] for r in checkov(folder) for c in r.get("results", {}).get("failed_checks", [])]
    assert failed == []
    run = hcl_format_check(*sorted(folder.glob("*.tf")))
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_the_hooks_run_before_the_snapshot_and_after_the_restore_then_it_answers(demo_artifact) -> None:
    """awslambdaric with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, as Lambda starts a
    SnapStart function: init, before-snapshot hooks, /restore/next, after-restore hooks,
    and only then the first event."""
    app = demo_artifact("aws-lambda").path / "lambda" / "app"
    pixels, labels = demo_rows(4)
    with LambdaRuntime(app, env={"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}) as runtime:
        api = runtime.api
        request = api.queue_event({"inputs": {"pixels": pixels.tolist()}})
        status, body = api.result(request, timeout=120)
    log = runtime.output()
    assert status == "response" and body["outputs"]["label"] == labels.tolist()
    assert api.init_error is None and api.restore_error is None
    assert api.restored_at is not None and api.restored_at < api.handed_out[request]
    warmed = log.index("session warmed with one inference before the snapshot")
    restored = log.index("restored; random seeds, temporary names and the telemetry socket are new")
    assert warmed < restored


class _Session:
    def __init__(self) -> None:
        self.runs: list[dict] = []

    def run(self, outputs, feeds):
        self.runs.append(feeds)
        return []


class _Reporter:
    reconnected = 0

    def reconnect(self) -> None:
        self.reconnected += 1


class _Model:
    class config:  # noqa: N801
        inputs = [{"name": "ids", "dtype": "int64", "shape": ["batch", 8]},
                  {"name": "text", "dtype": "object", "shape": [None]}]

    def __init__(self) -> None:
        self.session, self.reporter = _Session(), _Reporter()


def test_before_the_snapshot_the_session_runs_once_on_inputs_the_signature_accepts() -> None:
    model = _Model()
    snapstart.before_snapshot(model)
    (feeds,) = model.session.runs
    assert feeds["ids"].shape == (1, 8) and feeds["ids"].dtype == np.int64 and not feeds["ids"].any()
    assert feeds["text"].tolist() == [""]


def test_after_a_restore_seeds_names_and_the_telemetry_socket_are_new() -> None:
    import tempfile as tempfile_module

    model = _Model()
    random.seed(7)
    np.random.seed(7)
    tempfile_module._get_candidate_names()  # the snapshot's name sequence
    snapshot_draws = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    snapstart.after_restore(model)
    assert (random.random(), np.random.random()) != snapshot_draws
    assert tempfile_module._name_sequence is None  # drawn afresh, from a new seed, on next use
    assert model.reporter.reconnected == 1
