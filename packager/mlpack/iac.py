"""`mlpack iac ARTIFACT`: render the artifact's infrastructure code (iac/) again from its
manifest.json, e.g. after `mlpack push` recorded the image digest, so that deployments
pin the image by digest.

Only the target's IaC render groups (templates under `templates/iac/`) are rendered;
every other file of the artifact stays as built. The new iac/ folder replaces the old
one in a single rename, and the manifest's file list is updated to match.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import InputError, MlpackError
from .fsutil import staged_folder
from .manifest import file_entries, read_manifest, update_manifest
from .model_info import Signature
from .render import ImageRef, ModelFacts, RenderContext, render_group, write_files
from .targets import Target, load_target

IAC_DIR = "iac"
IAC_TEMPLATES = "iac/"

# The OCI distribution reference grammar, simplified: [host[:port]/]path, tag, digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def iac_groups(target: Target) -> list[tuple[str, str]]:
    """(templates, into) of the target's render groups that write infrastructure code."""
    return [(g.templates, g.into) for g in target.render if g.templates.startswith(IAC_TEMPLATES)]


def context_from_manifest(manifest: dict[str, Any]) -> RenderContext:
    """The render context of a built artifact, from what its manifest recorded."""
    from .build import NAME_PATTERN, NAME_RULE

    name = manifest.get("name")
    # The name is written unquoted in comments, unit files and paths: it must stay a DNS label.
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InputError(f"manifest.json names the model {name!r}, which is not {NAME_RULE}",
                         "rebuild the artifact with `mlpack build --name <plain-name>`")
    _check_image(manifest.get("image"))
    try:
        target = load_target(manifest["target"])
        model = manifest["model"]
        image = manifest["image"]
        versions = {k: str(v) for k, v in manifest["versions"].items() if k != "build_python"}
        return RenderContext(
            name=name,
            target=target,
            model=ModelFacts(
                sha256=model["sha256"], source_sha256=model["source"]["sha256"],
                size_bytes=model["size_bytes"], variant=model["variant"],
                signature=Signature.model_validate(model["signature"]),
            ),
            image=ImageRef(repository=image["repository"], tag=image["tag"], digest=image.get("digest")),
            versions=versions,
            memory_mb=manifest["memory_mb"],
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"manifest.json lacks {exc}", "rebuild the artifact with `mlpack build`") from exc
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InputError(f"manifest.json has an invalid value at {where}: {problem['msg']}",
                         "rebuild the artifact with `mlpack build`") from exc


def _check_image(image: Any) -> None:
    """The image reference reaches shell scripts and unit files as well as YAML and HCL:
    besides escaping it there, refuse anything that is not an image reference."""
    fix = "record it again with `mlpack image` and `mlpack push`"
    if not isinstance(image, dict):
        raise InputError("manifest.json has no image entry", "rebuild the artifact with `mlpack build`")
    checks = (("repository", REPOSITORY, True), ("tag", TAG, True), ("digest", DIGEST, False))
    for key, pattern, required in checks:
        value = image.get(key)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not pattern.match(value):
            raise InputError(f"manifest.json has an invalid image {key}: {value!r}", fix)


def render_iac(ctx: RenderContext) -> dict[str, str]:
    files: dict[str, str] = {}
    for templates, into in iac_groups(ctx.target):
        files.update(render_group(templates, into, ctx))
    return files


def regenerate_iac(root: Path) -> list[str]:
    """Rewrite root/iac from the manifest; returns the artifact paths written."""
    root = root.expanduser()
    manifest = read_manifest(root)
    ctx = context_from_manifest(manifest)
    files = render_iac(ctx)
    if not files:
        raise MlpackError(f"target {ctx.target.name} has no infrastructure templates", "nothing to do")
    if any(not path.startswith(f"{IAC_DIR}/") for path in files):
        raise MlpackError("an IaC render group writes outside iac/", "fix the target's [[render]] entries")

    # Render beside the old folder, then swap: readers see the old or the new iac/, never a mix.
    with staged_folder(root / IAC_DIR) as staging:
        write_files(staging, {path.removeprefix(f"{IAC_DIR}/"): text for path, text in files.items()})

    entries = {f"{IAC_DIR}/{path}": entry for path, entry in file_entries(root / IAC_DIR).items()}

    def change(data: dict[str, Any]) -> None:
        kept = {p: e for p, e in data.get("files", {}).items() if not p.startswith(f"{IAC_DIR}/")}
        data["files"] = dict(sorted({**kept, **entries}.items()))

    update_manifest(root, change)
    return sorted(files)
