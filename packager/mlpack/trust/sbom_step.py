"""The `sbom` step (runs uv): sbom.cdx.json, the artifact's CycloneDX 1.6 bill of materials.

It runs last, after the steps that package Python code, for every target (the plan adds
it): it lists the packages of the Lambda zip when there is one (as installed in it), else
the Bento's pinned requirements, each with its wheel's sha256; the shipped model with the
accuracy gate's verdict; mlpack's runtime code; the base image by reference. See sbom.py.
"""

from __future__ import annotations

from ..manifest import Manifest, SbomSection
from ..model.info import sha256_file
from .sbom import SBOM, Contents, document, installed_packages, pinned_packages, with_wheel_hashes
from ..steps import StepContext
from ..awslambda.zip_step import ZIP


class SbomStep:
    name = "sbom"
    section = "sbom"
    writes = (SBOM,)

    def describe(self, manifest: Manifest) -> str:
        return "Writing the software bill of materials (CycloneDX 1.6)"

    def run(self, ctx: StepContext) -> SbomSection:
        m = ctx.manifest
        platform = m.target.platform
        # The draft manifest has no step sections yet: ask the target what was built.
        zipped = ctx.root / ZIP if "lambda-zip" in m.target.builds else None
        if zipped is not None and zipped.is_file():
            packages = installed_packages(zipped)
        else:
            # A Bento's environment: what it pins (BentoML adds itself), installed where it runs.
            bento = "bento" in m.target.builds
            packages = pinned_packages(m.requirements.server if bento else m.requirements.runtime)
        packages, notes = with_wheel_hashes(packages, platform.python_platform, platform.python_version)
        for note in notes:
            ctx.log(note)
        runtime = {f"{part}": _tree_digest(ctx.root, part) for part in _runtime_parts(ctx)}
        text = document(m, Contents(packages, m.target.image.base, notes), sha256_file(ctx.model), ctx.gate,
                        {k: v for k, v in runtime.items() if v})
        (ctx.root / SBOM).write_text(text, encoding="utf-8")
        ctx.log(f"{SBOM}: {len(packages)} Python packages, the model, {m.target.image.base}")
        return SbomSection(path=SBOM)


def _runtime_parts(ctx: StepContext) -> list[str]:
    """mlpack's code in the app folder the other steps packaged (Bento source or Lambda app)."""
    return [f"{app}/{package}" for app in ("bento/src", "lambda/app")
            for package in ("mlpack_runtime", "mlpack_agent") if (ctx.root / app / package).is_dir()]


def _tree_digest(root, relative: str) -> str | None:
    """sha256 over a folder's files (path and content hash, sorted): names a copy of code."""
    import hashlib

    folder = root / relative
    lines = [f"{p.relative_to(folder).as_posix()} {sha256_file(p)}" for p in sorted(folder.rglob("*")) if p.is_file()
             and "__pycache__" not in p.parts]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest() if lines else None
