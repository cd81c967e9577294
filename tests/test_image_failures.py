"""A failed image build ends in one line that names the cause and the fix, never a cut-off
RUN script: a base that cannot be pulled names --base-image and docs/images.md; a foreign
platform without emulation is refused before any work, with the command that enables it.

The buildah tests run real builds on tiny bases made here (this machine's dash and its C
library, or a /bin/sh that is no program for any platform), so they need no stand-in base.
The outputs quoted in the other tests are what buildah 1.28 and the Docker daemon print.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.cli import app
from mlpack.errors import MlpackError
from mlpack.image import builder as builders
from mlpack.image import emulation
from mlpack.image.builder import BuildahBuilder
from mlpack.image.emulation import emulation_problem
from mlpack.image.failures import explain_build_failure

from .manifests import make_manifest, write_artifact
from .pyramid import local

requires_buildah = pytest.mark.requires_tool("buildah", hint="apt-get install buildah (bash .ci/image-setup.sh)")

# A RUN script shaped like the Dockerfiles' build stage (shell builtins only: the tiny base has no tools).
# Both lines on stderr: buildah relays a step's stdout and stderr through pipes of their own,
# so a line on one can overtake a line on the other (a full run once showed the stdout line last).
SCRIPT = ('set -eu; site=/out/opt/mlpack/site-packages; echo "installing into $site" >&2; '
          'if [ -d /tmp/build/site-packages ]; then mv /tmp/build/site-packages "$site"; else '
          'echo "container/wheels/ (the mlpack-agent wheel) is missing" >&2; exit 3; fi')
ENABLE = "apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-aarch64"


@pytest.fixture
def no_arm64_emulation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An amd64 host whose binfmt_misc is mounted but has no qemu-aarch64 entry."""
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "status").write_text("enabled\n")
    monkeypatch.setattr(emulation, "BINFMT_MISC", binfmt)
    monkeypatch.setattr(emulation, "host_platform", lambda: "linux/amd64")
    monkeypatch.setattr("mlpack.image.failures.host_platform", lambda: "linux/amd64")
    return binfmt


# ---- what the output says, read into one line -----------------------------------------------

def test_an_unreachable_docker_hub_names_base_image_and_the_offline_doc() -> None:
    output = (
        "[1/2] STEP 1/3: FROM python:3.11-slim-bookworm AS build\n"
        'Resolved "python" as an alias (/etc/containers/registries.conf.d/shortnames.conf)\n'
        "Trying to pull docker.io/library/python:3.11-slim-bookworm...\n"
        "Error: creating build container: initializing source docker://python:3.11-slim-bookworm: pinging "
        'container registry registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: lookup '
        "registry-1.docker.io on 10.255.255.53:53: no such host\n")
    error = explain_build_failure("buildah", "m/a:1", "linux/amd64", output, "python:3.11-slim-bookworm")
    assert error.one_line() == (
        "the base image python:3.11-slim-bookworm could not be pulled (pinging container registry "
        'registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on '
        "10.255.255.53:53: no such host); build on a mirror or a local copy with --base-image IMAGE; "
        "docs/images.md shows how to make one offline")
    assert (Path(__file__).parents[1] / "docs" / "images.md").is_file()


def test_a_foreign_run_step_without_emulation_names_the_command_that_enables_it(no_arm64_emulation) -> None:
    output = (f"[1/2] STEP 2/3: RUN {SCRIPT}\n"
              "process failed to start with error: fork/exec /bin/sh: exec format errorprocess exited with error: "
              "exec: not startedsubprocess exited with status 1\n"
              f'Error: building at STEP "RUN {SCRIPT}": exit status 1\n')
    line = explain_build_failure("buildah", "m/a:1", "linux/arm64", output, "python:3.11-slim-bookworm").one_line()
    assert line.startswith("buildah could not build m/a:1: a RUN step could not start (exec format error): building "
                           "a linux/arm64 image on this linux/amd64 machine runs its RUN steps under emulation, and "
                           "qemu-aarch64 is not registered with binfmt_misc; enable emulation, as root: ")
    assert ENABLE in line and "site-packages" not in line


def test_a_failed_docker_run_step_is_named_by_number_without_its_script() -> None:
    output = ("Step 1/12 : FROM python:3.11-slim-bookworm AS build\n ---> 1c2d\nStep 3/12 : RUN " + SCRIPT + "\n"
              " ---> Running in 5e6f\ncontainer/wheels/ (the mlpack-agent wheel) is missing\n"
              f"The command '/bin/sh -c {SCRIPT}' returned a non-zero code: 3")
    line = explain_build_failure("docker", "m/a:1", "linux/amd64", output, "python:3.11-slim-bookworm").one_line()
    assert line == ('docker could not build m/a:1: step 3/12 (RUN) failed (exit status 3); its last output: '
                    '"container/wheels/ (the mlpack-agent wheel) is missing"; see the build output above (rerun '
                    'without -q)')


def test_emulation_checks_read_binfmt_misc(no_arm64_emulation: Path) -> None:
    assert emulation_problem("linux/amd64") is None  # native: nothing to emulate
    entry = no_arm64_emulation / "qemu-aarch64"
    entry.write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert "qemu-aarch64 is registered with binfmt_misc but disabled" in emulation_problem("linux/arm64").message
    entry.write_text("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: \n")
    assert "without the F flag" in emulation_problem("linux/arm64").message
    entry.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert emulation_problem("linux/arm64") is None
    (no_arm64_emulation / "status").unlink()  # not mounted: the hint mounts it first
    problem = emulation_problem("linux/arm64")
    assert "binfmt_misc is not mounted" in problem.message
    assert problem.hint.startswith(f"enable emulation, as root: mount -t binfmt_misc binfmt_misc {no_arm64_emulation}"
                                   f" && {ENABLE}")


def test_mlpack_image_refuses_a_foreign_platform_without_emulation_before_any_work(
    no_arm64_emulation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = tmp_path / "digits-arm-edge"
    artifact.mkdir()
    write_artifact(artifact, make_manifest("arm-edge", "digits"))
    before = (artifact / "manifest.json").read_text()
    monkeypatch.setattr(builders.shutil, "which", lambda name: f"/nonexistent/{name}")  # never run
    result = CliRunner().invoke(app, ["image", str(artifact), "--builder", "buildah", "-q"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "error: building a linux/arm64 image on this linux/amd64 machine runs its RUN steps under emulation, and "
        f"qemu-aarch64 is not registered with binfmt_misc; enable emulation, as root: {ENABLE}; or build on a "
        "linux/arm64 machine\n")
    assert (artifact / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binfmt_misc", "digits-arm-edge"]  # no staged context


# ---- real buildah builds ----------------------------------------------------------------------

def base_from(folder: Path, ref: str, files: dict[str, Path | bytes]) -> str:
    """A one-layer image `ref` of `files` (path in the image -> host file or bytes), committed
    to buildah's store; FROM scratch + ADD, so no step runs."""
    folder.mkdir()
    with tarfile.open(folder / "rootfs.tar", "w") as tar:
        for name, source in files.items():
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    (folder / "Containerfile").write_text("FROM scratch\nADD rootfs.tar /\n")
    subprocess.run(["buildah", "build", "--quiet", "--isolation", "chroot", "-t", ref, str(folder)],
                   check=True, capture_output=True)
    return ref


def shell_files() -> dict[str, Path]:
    """This machine's dash as /bin/sh, with the libraries it links (ldd)."""
    dash = Path(shutil.which("dash") or "/bin/dash").resolve()
    linked = subprocess.run(["ldd", str(dash)], capture_output=True, text=True, check=True).stdout
    libraries = {part for part in linked.split() if part.startswith("/")}
    return {"/bin/sh": dash, **{lib: Path(lib).resolve() for lib in libraries}}


@pytest.fixture
@local
def images(tmp_path: Path):
    made: list[str] = []
    yield made
    for ref in made:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


def build(tmp_path: Path, dockerfile: str, platform: str, base: str | None = None) -> MlpackError:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    with pytest.raises(MlpackError) as failed:
        BuildahBuilder().build(context, context / "Dockerfile", "localhost/mlpack-test/failing:1", platform,
                               {"BASE_IMAGE": base} if base else {}, lambda _: None)
    return failed.value


@requires_buildah
def test_a_failing_run_step_ends_in_its_number_and_its_last_output_not_its_script(tmp_path: Path, images) -> None:
    base = base_from(tmp_path / "base", "localhost/mlpack-test/dash:1", shell_files())
    images.append(base)
    script = SCRIPT.replace("; ", "; \\\n    ")  # as the Dockerfiles write it: continued lines
    error = build(tmp_path, f"ARG BASE_IMAGE\nFROM {base} AS build\nRUN {script}\n\nFROM scratch\n"
                            "COPY --from=build /bin/sh /bin/sh\n", emulation.host_platform())
    assert error.one_line() == (
        'buildah could not build localhost/mlpack-test/failing:1: step 2/2 of stage 1/2 (RUN) failed (exit status 3); '
        'its last output: "container/wheels/ (the mlpack-agent wheel) is missing"; see the build output above '
        "(rerun without -q)")


@requires_buildah
def test_a_base_whose_shell_this_machine_cannot_run_is_named(tmp_path: Path, images) -> None:
    not_a_program = b"\x7fELF\x02\x01\x01" + bytes(9) + b"no machine runs this"
    base = base_from(tmp_path / "base", "localhost/mlpack-test/foreign-sh:1", {"/bin/sh": not_a_program})
    images.append(base)
    platform = emulation.host_platform()
    error = build(tmp_path, f"FROM {base}\nRUN {SCRIPT}\n", platform, base=base)
    assert error.one_line() == (
        "buildah could not build localhost/mlpack-test/failing:1: a RUN step could not start (exec format error): "
        f"the base image {base} holds programs for another platform than {platform}; pass --base-image with a "
        f"{platform} image")


@pytest.mark.slow
@requires_buildah
def test_a_base_image_that_cannot_be_pulled_is_named_with_the_way_out(tmp_path: Path) -> None:
    error = build(tmp_path, "ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\nRUN true\n",
                  emulation.host_platform(), base="localhost:1/mirror/python:3.11-slim-bookworm")
    line = error.one_line()
    assert line.startswith("--base-image localhost:1/mirror/python:3.11-slim-bookworm could not be pulled (pinging "
                           "container registry localhost:1: ")
    assert line.endswith("; check its name and that its registry is reachable, or that it is in the local image "
                         "store; docs/images.md shows how to make a base offline")


def test_docker_builder_errors_are_explained_too(tmp_path: Path) -> None:
    from .fake_docker import FakeDocker

    class Failing(FakeDocker):
        def build(self, **kwargs):
            yield {"stream": "Step 1/3 : FROM python:3.11-slim-bookworm\n"}
            yield {"error": "pull access denied for python, repository does not exist or may require 'docker login'"}

    (tmp_path / "container").mkdir()
    (tmp_path / "container" / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.11-slim-bookworm\n")
    with pytest.raises(MlpackError) as failed:
        builders.DockerBuilder(Failing([])).build(tmp_path, tmp_path / "container" / "Dockerfile", "m/a:1",
                                                  "linux/amd64", {}, lambda _: None)
    assert failed.value.one_line().startswith("the base image python:3.11-slim-bookworm could not be pulled (pull "
                                              "access denied for python, ")
    assert "--base-image IMAGE" in failed.value.one_line()
