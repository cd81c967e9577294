"""Image sizes per target against BentoML's default image: writes the "Images" section of BENCHMARKS.md.

    python -m benchmarks.image_sizes            # build, measure, print, update BENCHMARKS.md
    python -m benchmarks.image_sizes --no-write # print only
    python -m benchmarks.image_sizes --quick --check [--artifact DIR]   # CI: seconds, writes nothing

mlpack's images are built for real with buildah on the offline stand-in bases (Debian
bookworm minbase + python3; see tests/standin.py) and measured layer by layer as a
registry stores them: `buildah push` to a `dir:` layout with gzip (compressed) and with
`--disable-compression` (uncompressed).

BentoML's default image (`bentoml containerize`, the Dockerfile in the artifact's
bento/env/docker/) cannot be built here: its RUN steps need Docker Hub, apt and PyPI from
inside the build. Its layers are reproduced on the host instead, each measured as a tar
stream and gzip (level 6, what containers/image uses) of exactly the files the step adds,
on the same stand-in base:
  apt-get install ca-certificates gnupg2 bash build-essential git  -> debootstrap of the base
      with those packages, minus the files of the base (apt lists left out: an underestimate);
  pip install uv==<pinned in the Dockerfile>                        -> uv installed for the platform;
  uv venv + uv pip install -r env/python/requirements.txt (UV_COMPILE_BYTECODE=1) -> the same
      packages installed for the platform with bytecode compiled;
  COPY ./env/docker, ./env/python, . (the whole Bento)               -> the Bento folder.
The method is checked on the base: the tar+gzip of the stand-in root file system is
compared with the layer buildah wrote for it.

`--quick --check` measures one x86-cpu image (the one `--artifact`'s manifest names, as
`mlpack image` left it: tests/test_image.py passes the image its fixture built; else the
demo and its image are built here) beside a lower bound of BentoML's default image for the
same Bento, both in this run: the stand-in base, the requirements installed for the
platform with bytecode, and the Bento. The apt layer (a debootstrap with build-essential,
minutes uncached) and uv are left out, so the baseline is smaller than BentoML's image and
the quick limit, QUICK_LIMIT, is larger than the full goal's one third; it is a guard
against an image that grows, the goal itself is the full run's.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlpack.build import BuildRequest, build
from mlpack.artifact import Artifact
from mlpack.image.build import build_image
from mlpack.image.builder import BuildahBuilder
from mlpack.uv import uv_binary
from tests.standin import ensure_standin, in_slim_image, rootfs_tarball
from mlpack.progress import Progress

from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, demo_image, report, writing_parser

ARCH = {"x86-cpu": "amd64", "arm-edge": "arm64", "aws-lambda": "amd64", "cuda-gpu": "amd64"}
BUILT = ("x86-cpu", "arm-edge", "aws-lambda", "cuda-gpu")
COMPARED = ("x86-cpu", "arm-edge", "cuda-gpu")  # the targets with a Bento, against BentoML's default image
BENTO_APT = ("ca-certificates", "gnupg2", "bash", "build-essential", "git")
MB = 1e6
# --quick: the x86-cpu image against the baseline without BentoML's apt and uv layers, compressed
# and uncompressed. The full run measured 0.62 / 0.63 on that baseline (BENCHMARKS.md: 79.6 / 236.6
# against 52.4 + 75.5 + 0.1 / 128.3 + 247.3 + 0.5, both with bytecode); an image a fifth larger
# than today fails.
QUICK_LIMIT = 0.75


@dataclass
class Size:
    raw: int
    gz: int

    def __add__(self, other: "Size") -> "Size":
        return Size(self.raw + other.raw, self.gz + other.gz)

    def __sub__(self, other: "Size") -> "Size":
        return Size(self.raw - other.raw, self.gz - other.gz)

    def text(self) -> str:
        return f"{self.gz / MB:.1f} / {self.raw / MB:.1f}"


class _Counter:
    def __init__(self, inner=None) -> None:
        self.inner, self.count = inner, 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class LayerMeter:
    """Measures a tar stream: its length, and its length gzipped at level 6."""

    def __enter__(self) -> tarfile.TarFile:
        self.gz_count = _Counter()
        self.gz = gzip.GzipFile(fileobj=self.gz_count, mode="wb", compresslevel=6, mtime=0)
        self.raw = _Counter(self.gz)
        self.tar = tarfile.open(fileobj=self.raw, mode="w|", format=tarfile.PAX_FORMAT)
        return self.tar

    def __exit__(self, *exc: object) -> None:
        self.tar.close()
        self.gz.close()
        self.size = Size(self.raw.count, self.gz_count.count)


def measure_dir(folder: Path, arcname: str) -> Size:
    meter = LayerMeter()
    with meter as tar:
        tar.add(folder, arcname=arcname)
    return meter.size


def measure_rootfs_diff(full: Path, base: Path | None) -> Size:
    """The files of tarball `full` that tarball `base` lacks or holds differently."""
    known = {}
    if base is not None:
        with tarfile.open(base) as tar:
            known = {m.name: (m.size, m.linkname, m.mode) for m in tar}
    meter = LayerMeter()
    with meter as out, tarfile.open(full) as tar:
        for member in tar:
            if not in_slim_image(member.name):  # the python:*-slim images exclude docs in every layer
                continue
            if known.get(member.name) == (member.size, member.linkname, member.mode) and not member.isdir():
                continue
            if member.isdir() and member.name in known:
                continue
            out.addfile(member, tar.extractfile(member) if member.isfile() else None)
    return meter.size


def image_size(ref: str) -> tuple[Size, list[Size]]:
    """(whole image, per layer) as a registry stores it: gzip layers, and their uncompressed tars."""
    layers: dict[str, list[int]] = {"gz": [], "raw": []}
    for kind, extra in (("gz", []), ("raw", ["--disable-compression"])):
        with tempfile.TemporaryDirectory(prefix="image-size-") as tmp:
            subprocess.run(["buildah", "push", "--quiet", *extra, ref, f"dir:{tmp}"], check=True,
                           capture_output=True)
            manifest = json.loads((Path(tmp) / "manifest.json").read_text())
            layers[kind] = [layer["size"] for layer in manifest["layers"]]
    per_layer = [Size(r, g) for r, g in zip(layers["raw"], layers["gz"])]
    return Size(sum(layers["raw"]), sum(layers["gz"])), per_layer


def _uv_version(dockerfile: Path) -> str:
    match = re.search(r"uv==([0-9.]+)", dockerfile.read_text())
    return match.group(1) if match else "0.13.4"


def bentoml_default_layers(artifact: Path, arch: str, work: Path) -> dict[str, Size]:
    """BentoML's default image for the artifact's Bento, layer by layer (see the module doc)."""
    target = Artifact.open(artifact).manifest.target
    bento = artifact / "bento"
    platform = ["--python-platform", target.platform.python_platform, "--python-version",
                target.platform.python_version, "--only-binary", ":all:"]
    base_tar = rootfs_tarball(arch)
    layers = {"base image (stand-in)": image_size(ensure_standin(arch))[0]}
    layers["apt-get install " + " ".join(BENTO_APT)] = measure_rootfs_diff(rootfs_tarball(arch, extra=BENTO_APT),
                                                                         base_tar)
    uv_dir = work / f"uv-{arch}"
    subprocess.run([uv_binary(), "pip", "install", "--quiet", "--target", str(uv_dir), *platform,
                    f"uv=={_uv_version(bento / 'env' / 'docker' / 'Dockerfile')}"], check=True)
    layers["pip install uv"] = measure_dir(uv_dir, "usr/local/lib/python3.11/site-packages")
    return {**layers, **bento_layers(artifact, work / f"venv-{arch}")}


def bento_layers(artifact: Path, venv: Path) -> dict[str, Size]:
    """BentoML's default image's layers of the Bento itself: its requirements installed for the
    target's platform with bytecode (into `venv`), and the Bento's folders copied."""
    target = Artifact.open(artifact).manifest.target
    bento = artifact / "bento"
    platform = ["--python-platform", target.platform.python_platform, "--python-version",
                target.platform.python_version, "--only-binary", ":all:"]
    subprocess.run([uv_binary(), "pip", "install", "--quiet", "--target", str(venv), *platform,
                    "--compile-bytecode", "-r", str(bento / "env" / "python" / "requirements.txt")], check=True)
    return {
        "uv venv + uv pip install -r requirements.txt (bytecode compiled)": measure_dir(
            venv, "app/.venv/lib/python3.11/site-packages"),
        "COPY env/docker, env/python, the Bento": (
            measure_dir(bento / "env" / "docker", "home/bentoml/bento/env/docker")
            + measure_dir(bento / "env" / "python", "home/bentoml/bento/env/python")
            + measure_dir(bento, "home/bentoml/bento")),
    }


def measure() -> dict:
    progress = Progress()
    builder = BuildahBuilder()
    results: dict = {"targets": {}, "bentoml": {}}
    with tempfile.TemporaryDirectory(prefix="image-sizes-") as tmp:
        work = Path(tmp)
        bases = {arch: ensure_standin(arch) for arch in ("amd64", "arm64")}
        base_size = {arch: image_size(ref)[0] for arch, ref in bases.items()}
        results["method_check"] = {"buildah": base_size["amd64"],
                                   "tar+gzip": measure_rootfs_diff(rootfs_tarball("amd64"), None)}
        progress.info("measured the bases")
        artifacts = {t: build(BuildRequest(target=t, out=work / "out"), progress).path for t in ARCH}
        for target in BUILT:
            arch = ARCH[target]
            built = build_image(Artifact.open(artifacts[target]), builder, bases[arch], progress)
            total, _ = image_size(built.ref)
            results["targets"][target] = {"total": total, "added": total - base_size[arch]}
            if target == "cuda-gpu":
                results["cuda_linked"] = linked_cuda_bytes(built.ref)
            subprocess.run(["buildah", "rmi", "-f", built.id], capture_output=True)  # measured: leave no image
        for target in COMPARED:
            layers = bentoml_default_layers(artifacts[target], ARCH[target], work)
            results["bentoml"][target] = {"layers": layers,
                                          "total": sum(layers.values(), Size(0, 0))}
    results["base"] = base_size
    results["bentoml_cuda"] = bentoml_cuda_versions()
    return results


# What onnxruntime-gpu's CUDA provider links (its NEEDED entries), and the provider itself.
LINKED = ("libonnxruntime_providers_cuda.so", "libcublasLt.so.*", "libcublas.so.*", "libcurand.so.*", "libcudart.so.*")


def linked_cuda_bytes(ref: str) -> int:
    """Bytes, in the built image, of the CUDA provider and the libraries it links: a floor for
    any image that can load it."""
    container = subprocess.run(["buildah", "from", "--pull=never", ref], capture_output=True, text=True,
                               check=True).stdout.strip()
    try:
        root = Path(subprocess.run(["buildah", "mount", container], capture_output=True, text=True,
                                   check=True).stdout.strip())
        site = root / "opt" / "mlpack" / "site-packages"
        return sum(f.stat().st_size for pattern in LINKED for f in site.rglob(pattern) if f.is_file())
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def bentoml_cuda_versions() -> list[str]:
    """The CUDA releases BentoML's `docker.cuda_version` can base an image on (nvidia/cuda images)."""
    from bentoml._internal.container.frontend.dockerfile import SUPPORTED_CUDA_VERSIONS

    return list(SUPPORTED_CUDA_VERSIONS)


def section(r: dict) -> str:
    base = r["base"]
    lines = [
        "## Images",
        "",
        "Produced by `python -m benchmarks.image_sizes` (buildah, offline). Sizes in MB as "
        "**compressed (gzip, what a pull downloads) / uncompressed**; every figure comes from that one run.",
        "Docker Hub is not reachable here, so every image is built on the same stand-in for "
        "`python:3.11-slim-bookworm`: Debian bookworm minbase + python3, without docs and translations like the "
        f"slim images ({base['amd64'].text()} for amd64, {base['arm64'].text()} for arm64). The x86-cpu and "
        "arm-edge images keep no base layer: they hold the base's Python and the libraries it links, copied onto "
        "an empty image (no shell, no package manager). Both mlpack's server images and BentoML's default carry "
        "their packages' bytecode (mlpack's the standard library's too: section \"Image start\" says what it buys).",
        "",
        "| Target | mlpack image | BentoML default image (same Bento, same base) | mlpack / BentoML |",
        "|---|---|---|---|",
    ]
    for target in ("x86-cpu", "arm-edge", "aws-lambda", "cuda-gpu"):
        ours = r["targets"][target]
        theirs = r["bentoml"].get(target)
        total = ours["total"].text()
        if theirs:
            t = theirs["total"]
            their_text = t.text()
            ratio = f"{ours['total'].gz / t.gz:.2f} / {ours['total'].raw / t.raw:.2f}"
        else:
            their_text, ratio = "n/a", "n/a"
        if target == "aws-lambda":
            their_text = "n/a (no Bento: a plain onnxruntime handler)"
            total += f" (of which the base {base['amd64'].text()})"
        lines.append(f"| {target} | {total} | {their_text} | {ratio} |")
    lines.append("")
    for target, share, words in (("x86-cpu", 3, "one third"), ("cuda-gpu", 4, "a quarter")):
        ours, theirs = r["targets"][target]["total"], r["bentoml"][target]["total"]
        goal = ours.gz <= theirs.gz / share and ours.raw <= theirs.raw / share
        lines.append(f"Goal: the {target} image at most {words} of BentoML's default: {ours.gz / theirs.gz:.2f} "
                     f"compressed, {ours.raw / theirs.raw:.2f} uncompressed: **{'meets' if goal else 'misses'} the "
                     "goal**.")
    linked = r.get("cuda_linked")
    if linked:
        bento = r["bentoml"]["cuda-gpu"]["total"]
        lines.append(f"The CUDA provider and the libraries it links (cuBLAS and cuBLASLt, cuRAND, the CUDA runtime) "
                     f"are {linked / MB:.1f} MB uncompressed in the cuda-gpu image, {linked / bento.raw:.2f} of "
                     "BentoML's default image: no image that can load onnxruntime-gpu's CUDA provider reaches a "
                     "quarter of it. What mlpack leaves out is everything else (the rest of cuDNN, headers, "
                     "static libraries, the compiler, pip and uv).")
    cuda = r["bentoml"]["cuda-gpu"]["layers"]
    lines += [
        "",
        "BentoML's default image for the x86-cpu and the cuda-gpu Bento, layer by layer (compressed / "
        "uncompressed MB):",
        "",
        "| Layer | x86-cpu | cuda-gpu |",
        "|---|---|---|",
    ]
    for name, size in r["bentoml"]["x86-cpu"]["layers"].items():
        lines.append(f"| {name} | {size.text()} | {cuda[name].text()} |")
    check = r["method_check"]
    lines += [
        "",
        "How: mlpack's images are built and pushed to a `dir:` layout; BentoML's default cannot be built "
        "offline (its RUN steps fetch from Docker Hub, apt and PyPI), so each of its layers is reproduced on the "
        "host with the same packages and measured as a tar stream and its gzip (apt lists are left out, so its "
        "figure is an underestimate). The tar+gzip method against buildah on the same base root file system: "
        f"{check['tar+gzip'].text()} against {check['buildah'].text()}.",
        "The aws-lambda image is built on the Debian stand-in (with its python3.12 wheels) for size only; on AWS it "
        "sits on `public.ecr.aws/lambda/python:3.12`.",
        "The cuda-gpu image carries CUDA as NVIDIA's wheels (the CUDA runtime, cuBLAS, cuRAND, and cuDNN's "
        "sub-libraries only where the model's operators call them, docs/serving.md) on the same slim base; "
        "BentoML's default image for the same Bento installs the same pinned wheels whole (all of cuDNN, headers, "
        "static libraries) beside a compiler. BentoML's GPU base images (`docker.cuda_version`: nvidia/cuda "
        f"cudnn-runtime) stop at CUDA {max(r['bentoml_cuda'], key=lambda v: tuple(map(int, v.split('.'))))} in the "
        "BentoML release pinned here, so none of them can run the CUDA 13 onnxruntime-gpu this target pins; they "
        "are not measured (they cannot be pulled here either).",
    ]
    return "\n".join(lines) + "\n"



def quick(given: Path | None) -> list[Ratio]:
    """The x86-cpu image (built by `mlpack image`, or here) against BentoML's default image
    without its apt and uv layers, for the same Bento on the same stand-in base."""
    with tempfile.TemporaryDirectory(prefix="image-sizes-quick-") as tmp:
        work = Path(tmp)
        with demo_image(given, work) as (artifact, image):
            ours, _ = image_size(image)
        base, _ = image_size(ensure_standin("amd64"))
        theirs = sum(bento_layers(artifact.root, work / "venv").values(), base)
    print(f"x86-cpu image {ours.text()} MB; BentoML's default without apt and uv {theirs.text()} MB "
          "(compressed / uncompressed)")
    return [Ratio("x86-cpu image / BentoML's default without apt and uv, compressed", ours.gz, theirs.gz, QUICK_LIMIT),
            Ratio("x86-cpu image / BentoML's default without apt and uv, uncompressed", ours.raw, theirs.raw,
                  QUICK_LIMIT)]


def main() -> None:
    args = writing_parser(__doc__, "x86-cpu").parse_args()
    if args.quick:
        raise SystemExit(report(quick(args.artifact), args.check))
    text = section(measure())
    print(text)
    if not args.no_write:
        write_section("Images", text)


if __name__ == "__main__":
    main()
