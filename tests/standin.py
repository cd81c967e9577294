"""Stand-in base images for building offline, where Docker Hub cannot be reached.

The Dockerfiles users get name the real public bases (`python:3.11-slim-bookworm`, ...).
Tests, benchmarks and air-gapped CI pass `--base-image` with one of these instead: a
Debian bookworm minbase root file system with python3 and python3-venv, made with
`debootstrap --foreign` (download and unpack only, so no emulation is needed for arm64),
the remaining .debs unpacked with `dpkg-deb -x`, and committed as a one-layer image.

Like the `debian:bookworm-slim` images that `python:3.11-slim-bookworm` builds on, the
image leaves out documentation, manual pages and translations (dpkg's path-exclude
list there), keeping the copyright files.

The root file system is cached as a tarball (default `~/.cache/mlpack-test/`), and the
image is kept in the builder's local storage, so the slow part runs once per machine.
Test code: it lives in tests/, so that no artifact or wheel ships it (benchmarks import
it as `tests.standin`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mlpack.errors import MlpackError

SUITE = "bookworm"
MIRROR = os.environ.get("MLPACK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv")
REPOSITORY = "localhost/mlpack-standin/python"
# Debian's names for the OCI architectures.
DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64"}
# Bump when the recipe changes, so old caches are not reused: RECIPE for the debootstrap
# tarball, IMAGE_RECIPE for the image made from it.
RECIPE = "1"
IMAGE_RECIPE = "2"
# What debian:*-slim images exclude (/etc/dpkg/dpkg.cfg.d/docker there).
SLIM_EXCLUDES = ("usr/share/doc/", "usr/share/man/", "usr/share/groff/", "usr/share/info/",
                 "usr/share/lintian/", "usr/share/linda/", "usr/share/locale/")


def cache_dir() -> Path:
    return Path(os.environ.get("MLPACK_TEST_CACHE", Path.home() / ".cache" / "mlpack-test"))


def standin_ref(arch: str) -> str:
    return f"{REPOSITORY}:3.11-{SUITE}-{arch}-r{RECIPE}.{IMAGE_RECIPE}"


def in_slim_image(name: str) -> bool:
    """Whether a path (relative, as in a tarball) is kept in a slim image."""
    name = name.removeprefix("./")
    if name.startswith("usr/share/doc/") and name.endswith("/copyright"):
        return True
    return not any(name.startswith(prefix) for prefix in SLIM_EXCLUDES)


def slim_tarball(source: Path, dest: Path) -> None:
    """Copy a root file system tarball without what slim images leave out."""
    with tarfile.open(source) as tar, tarfile.open(dest, "w") as out:
        for member in tar:
            if in_slim_image(member.name):
                out.addfile(member, tar.extractfile(member) if member.isfile() else None)


def rootfs_tarball(arch: str, cache: Path | None = None, extra: tuple[str, ...] = ()) -> Path:
    """A cached tarball of the stand-in root file system for `arch` (amd64 or arm64),
    with `extra` Debian packages on top (the image-size benchmark uses that)."""
    if arch not in DEBIAN_ARCH:
        raise MlpackError(f"no stand-in base for architecture {arch!r}", "use amd64 or arm64")
    cache = cache or cache_dir()
    label = "-".join(("python3", *extra))
    tarball = cache / f"{SUITE}-{label}-{arch}-r{RECIPE}.tar"
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise MlpackError("debootstrap is not installed", "apt-get install debootstrap (see .ci/image-setup.sh)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"standin-{arch}-", dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(root, arch, PACKAGES + tuple(extra))
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            # Numeric owners as they are on disk: everything belongs to root.
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
        os.replace(partial, tarball)
    return tarball


def _debootstrap(root: Path, arch: str, packages: tuple[str, ...]) -> None:
    command = [
        "debootstrap", "--foreign", f"--arch={DEBIAN_ARCH[arch]}", "--variant=minbase",
        f"--include={','.join(packages)}", SUITE, str(root), MIRROR,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise MlpackError(f"debootstrap failed: {' '.join(tail)}", "check that the Debian mirror is reachable")
    # The first stage unpacked only the essential packages; unpack the rest without
    # running maintainer scripts (they would need emulation for a foreign architecture).
    archives = root / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # What the skipped maintainer scripts would have made: users and groups.
    for name in ("passwd", "group"):
        master = root / "usr" / "share" / "base-passwd" / f"{name}.master"
        if master.is_file():
            shutil.copyfile(master, root / "etc" / name)
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    for deb in archives.glob("*.deb"):
        deb.unlink()
    for folder in (root / "var" / "lib" / "apt" / "lists",):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)


def ensure_standin(arch: str, cache: Path | None = None) -> str:
    """The stand-in base for `arch` in buildah's local storage; built from the cache if missing."""
    ref = standin_ref(arch)
    if shutil.which("buildah") is None:
        raise MlpackError("buildah is not installed", "apt-get install buildah (see .ci/image-setup.sh)")
    if subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0:
        return ref
    tarball = rootfs_tarball(arch, cache)
    with tempfile.TemporaryDirectory(prefix="standin-ctx-") as ctx:
        slim_tarball(tarball, Path(ctx) / "rootfs.tar")
        # ADD of a local tarball unpacks it; no RUN step, so no emulation for arm64.
        (Path(ctx) / "Containerfile").write_text(
            "FROM scratch\n"
            "ADD rootfs.tar /\n"
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8\n"
            'CMD ["python3"]\n'
        )
        done = subprocess.run(
            ["buildah", "build", "--quiet", "--isolation", "chroot", f"--platform=linux/{arch}",
             "-f", str(Path(ctx) / "Containerfile"), "-t", ref, ctx],
            capture_output=True, text=True,
        )
    if done.returncode != 0:
        raise MlpackError(f"could not import the stand-in base {ref}: {done.stderr.strip()[-300:]}")
    return ref



# A stand-in for public.ecr.aws/lambda/python:3.12 (Amazon Linux, Python in /var/lang,
# awslambdaric in /var/runtime, /lambda-entrypoint.sh): the amd64 stand-in base with this
# machine's CPython 3.12 (pyenv's, linked against the same glibc) copied to /var/lang and
# awslambdaric installed for it. Debian has no Python 3.12, and the Lambda images cannot be
# pulled here. Bump LAMBDA_RECIPE when this recipe changes.
LAMBDA_REPOSITORY = "localhost/mlpack-standin/lambda-python"
LAMBDA_RECIPE = "2"
# As the real images: the entry point runs /var/runtime/bootstrap.py, which finds
# awslambdaric beside itself; the function's own PYTHONPATH is /var/task.
LAMBDA_ENTRYPOINT = ('#!/bin/sh\nexport LD_LIBRARY_PATH=/var/lang/lib\ncd "${LAMBDA_TASK_ROOT:-/var/task}"\n'
                     'exec /var/lang/bin/python3 /var/runtime/bootstrap.py "$@"\n')
LAMBDA_BOOTSTRAP = "import sys\nfrom awslambdaric.__main__ import main\n\nmain(sys.argv)\n"


def lambda_standin_ref() -> str:
    return f"{LAMBDA_REPOSITORY}:3.12-{SUITE}-amd64-r{RECIPE}.{IMAGE_RECIPE}.{LAMBDA_RECIPE}"


def ensure_lambda_standin(python: str) -> str:
    """The Lambda python3.12 stand-in (amd64) from the interpreter `python` (a 3.12)."""
    from mlpack.uv import install_for_platform

    ref = lambda_standin_ref()
    if subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0:
        return ref
    base = ensure_standin("amd64")
    prefix = Path(subprocess.run([python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                                 text=True, check=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="lambda-standin-") as tmp:
        ctx = Path(tmp)
        lang = ctx / "var" / "lang"
        (lang / "bin").mkdir(parents=True)
        shutil.copy2(prefix / "bin" / "python3.12", lang / "bin" / "python3.12")
        os.symlink("python3.12", lang / "bin" / "python3")
        (lang / "lib").mkdir()
        for library in (prefix / "lib").glob("libpython3.12.so*"):
            shutil.copy2(library, lang / "lib" / library.name, follow_symlinks=True)
        shutil.copytree(prefix / "lib" / "python3.12", lang / "lib" / "python3.12", symlinks=True,
                        ignore=shutil.ignore_patterns("test", "site-packages", "idlelib", "tkinter", "ensurepip"))
        (lang / "lib" / "python3.12" / "site-packages").mkdir()
        install_for_platform(ctx / "var" / "runtime", python_platform="x86_64-manylinux_2_28", python_version="3.12",
                             packages=["awslambdaric"], what="installing awslambdaric for the Lambda stand-in")
        (ctx / "var" / "runtime" / "bootstrap.py").write_text(LAMBDA_BOOTSTRAP)
        (ctx / "lambda-entrypoint.sh").write_text(LAMBDA_ENTRYPOINT)
        (ctx / "lambda-entrypoint.sh").chmod(0o755)
        (ctx / "Containerfile").write_text(
            f"FROM {base}\n"
            "COPY var/ /var/\n"
            "COPY lambda-entrypoint.sh /lambda-entrypoint.sh\n"
            "ENV LANG=C.UTF-8 LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime "
            "PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin LD_LIBRARY_PATH=/var/lang/lib\n"
            "WORKDIR /var/task\n"
            'ENTRYPOINT ["/lambda-entrypoint.sh"]\n'
        )
        done = subprocess.run(["buildah", "build", "--quiet", "--isolation", "chroot", "--platform=linux/amd64",
                               "-f", str(ctx / "Containerfile"), "-t", ref, str(ctx)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MlpackError(f"could not build the Lambda stand-in {ref}: {done.stderr.strip()[-300:]}")
    return ref
