"""Values that reach the IaC templates from outside (the image repository, tag and digest
recorded by `mlpack push`, the model name) are either escaped for each format, so that a
real parser reads back exactly the value, or rejected with a clear error."""

from __future__ import annotations

import json
import shlex
from pathlib import PurePosixPath
from typing import Any, Iterator

import pytest
import yaml

from mlpack.artifact import parse_manifest
from mlpack.errors import InputError
from mlpack.render.iac import render_iac
from mlpack.manifest import ImageSection
from mlpack.targets import target_files

from .iac_support import requires_hcl2
from .manifests import make_manifest
from .manifests import fixed_context

# Quotes, shell and HCL/CloudFormation template syntax, a comment, a YAML mapping, a newline.
HOSTILE = "evil\" 'q' $HOME ${var.x} %{if 1} `id` \\ # c: d\ninjected: true"
REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/" + HOSTILE
DIGEST = "sha256:" + HOSTILE


class _AnyTagLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def hostile_files(target: str) -> tuple[str, dict[str, str]]:
    # Past the manifest's own checks (model_construct skips them): escaping must hold anyway.
    image = ImageSection.model_construct(repository=REPOSITORY, tag=HOSTILE, digest=DIGEST, local=None)
    ctx = fixed_context(target).model_copy(update={"image": image})
    return ctx.image.pinned, render_iac(ctx)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from keys(v)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


def hcl_unescape(text: str) -> str:
    # python-hcl2 decodes \" and \n but leaves HCL's template escapes $${ and %%{ as written.
    return text.replace("$${", "${").replace("%%{", "%{")


@pytest.mark.parametrize("target", sorted(target_files()))
def test_hostile_image_reference_reads_back_exactly_in_every_yaml_file(target: str) -> None:
    pinned, files = hostile_files(target)
    found = 0
    for path, text in files.items():
        if PurePosixPath(path).suffix != ".yaml":
            continue
        documents = [d for d in yaml.load_all(text, Loader=_AnyTagLoader) if d]
        assert "injected" not in set(keys(documents)), f"{path}: a value became a YAML key"
        values = list(strings(documents))
        for value in values:
            if HOSTILE in value:
                # Each occurrence is the whole reference, or a shell word of a script.
                words = shlex.split(value) if value.startswith(("docker ", "install ")) else [value]
                assert any(w in (pinned, f"docker:{pinned}", HOSTILE) for w in words), f"{path}: {value!r}"
                found += 1
    assert found, f"{target}: no YAML file carries the image reference"


@pytest.mark.parametrize("target", ["aws-lambda"])
def test_hostile_image_reference_reads_back_exactly_in_sam(target: str) -> None:
    pinned, files = hostile_files(target)
    template = yaml.load(files["iac/sam/template.yaml"], Loader=_AnyTagLoader)
    function = template["Resources"]["Function"]["Properties"]
    assert function["PackageType"] == "Image" and function["ImageUri"] == pinned


@requires_hcl2
@pytest.mark.parametrize("target", sorted(t for t in target_files()))
def test_hostile_image_reference_reads_back_exactly_in_terraform(target: str) -> None:
    import hcl2

    pinned, files = hostile_files(target)
    for path, text in files.items():
        if not path.endswith(".tf"):
            continue
        parsed = hcl2.loads(text)  # a stray quote or newline would not parse
        for value in strings(parsed):
            assert "injected" not in value or hcl_unescape(value) == pinned, f"{path}: {value!r}"
        if path.endswith("terraform-lambda/variables.tf"):
            variables = {k: v for item in parsed["variable"] for k, v in item.items()}
            assert hcl_unescape(variables["image_uri"]["default"]) == pinned
            assert "${" not in variables["image_uri"]["default"].replace("$${", ""), "an HCL interpolation slipped in"


@pytest.mark.parametrize("target", sorted(target_files()))
def test_hostile_values_never_reach_systemd_units_or_comments_raw(target: str) -> None:
    _, files = hostile_files(target)
    for path, text in files.items():
        for line in text.splitlines():
            # A raw newline from a value would start a line with the rest of it.
            assert not line.startswith("injected: true"), path
            if line.lstrip().startswith("#"):
                assert HOSTILE.splitlines()[0] not in line, f"{path}: a value in a comment"
        if path.endswith(".service"):
            assert "evil" not in text, path


def _manifest_json(**changes: Any) -> dict[str, Any]:
    data = json.loads(make_manifest("x86-cpu").to_json())
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.mark.parametrize("name", ['my"model', "model$x", "m${x}", "model\nx: 1", "Model", "-model", "a" * 41])
def test_mlpack_rejects_a_manifest_whose_name_is_not_a_dns_label(name: str) -> None:
    with pytest.raises(InputError, match="manifest.json has an invalid name: .* is not 1 to 40 lowercase"):
        parse_manifest(_manifest_json(name=name))


VALID_IMAGE = {"repository": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/model", "tag": "0.1.0-abc",
               "digest": "sha256:" + "0" * 64}


@pytest.mark.parametrize("key, value", [
    ("repository", REPOSITORY), ("repository", "repo name"), ("repository", "Repo/Upper"),
    ("tag", HOSTILE), ("tag", "-starts-with-dash"), ("tag", "x" * 129),
    ("digest", DIGEST), ("digest", "sha256:abc"), ("digest", "md5:" + "0" * 64),
])
def test_mlpack_rejects_a_manifest_whose_image_reference_is_malformed(key: str, value: str) -> None:
    with pytest.raises(InputError, match=f"manifest.json has an invalid image.{key}: String should match pattern"):
        parse_manifest(_manifest_json(image={**VALID_IMAGE, key: value}))


def test_a_well_formed_image_reference_passes_the_check() -> None:
    for image in (VALID_IMAGE, {**VALID_IMAGE, "digest": None}, {"repository": "localhost:5000/m", "tag": "t"},
                  {"repository": "mlpack/digits-demo-x86-cpu", "tag": "0.1.0-0b1494b64470"}):
        assert parse_manifest(_manifest_json(image=image)).image.repository == image["repository"]
