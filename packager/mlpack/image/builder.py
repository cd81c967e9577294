"""Image builders: one small interface, two implementations.

`DockerBuilder` talks to a Docker daemon through the docker SDK (or anything that speaks
its API, such as `podman system service`). `BuildahBuilder` builds daemonless with
`buildah` (chroot isolation, so it works inside containers and CI machines without a
daemon). `select_builder` picks docker when a daemon answers, buildah otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from ..errors import InputError, MlpackError
from .emulation import emulation_problem
from .failures import explain_build_failure

Log = Callable[[str], None]

BUILDERS = ("docker", "buildah")


@dataclass(frozen=True)
class BuiltImage:
    ref: str  # local name:tag
    id: str  # sha256:<config digest>, the same in every registry the image lands in
    platform: str  # linux/amd64, linux/arm64


@dataclass(frozen=True)
class PushedImage:
    ref: str  # registry/repo:tag it was pushed to
    digest: str  # sha256:<manifest digest> as the pushing tool reported it


class ImageBuilder(Protocol):
    name: str

    def preflight(self, platform: str) -> None:
        """Raise when this builder cannot build for `platform` here, before any work."""

    def build(self, context: Path, dockerfile: Path, ref: str, platform: str,
              build_args: dict[str, str], log: Log, timestamp: int | None = None) -> BuiltImage:
        """Build and tag an image; `timestamp` (seconds since 1970) replaces the clock in it."""

    def image_id(self, ref: str) -> str | None:
        """The config digest of a local image, None when it is not there."""

    def push(self, ref: str, dest: str, insecure: bool, log: Log, authfile: Path | None = None) -> PushedImage:
        """Push a local image; `authfile` holds credentials in containers-auth.json form."""


class PushFailed(MlpackError):
    """A push the registry refused or that could not reach it; `transient` ones are retried."""

    def __init__(self, message: str, hint: str | None = None, transient: bool = False) -> None:
        super().__init__(message, hint)
        self.transient = transient


# What a failed push says when trying again may help: server errors and dropped connections.
_TRANSIENT = re.compile(
    r"\b50[0234]\b|service unavailable|bad gateway|gateway time-?out|internal server error"
    r"|connection reset|broken pipe|unexpected EOF|i/o timeout|TLS handshake timeout",
    re.IGNORECASE,
)
_AUTH = re.compile(r"\b401\b|unauthorized|authentication required|denied", re.IGNORECASE)


def classify_push_error(dest: str, output: str) -> PushFailed:
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    detail = lines[-1] if lines else "no output"
    detail = re.sub(r"^(Error|error):\s*", "", detail)
    detail = re.sub(r'^pushing image "[^"]*" to "[^"]*":\s*', "", detail)
    registry = dest.split("/", 1)[0]
    if _AUTH.search(output):
        return PushFailed(f"registry {registry} refused the credentials for {dest}: {detail}",
                          f"log in first (docker login {registry}) or check the credential helper")
    return PushFailed(
        f"push to {dest} failed: {detail}",
        f"check that {registry} is reachable and accepts pushes",
        transient=bool(_TRANSIENT.search(output)),
    )


def _run_streaming(command: list[str], log: Log, keep: int = 40) -> tuple[int, str]:
    """Run a tool, pass its lines to `log` as they come, return (exit code, last lines)."""
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                log(f"  {line}")
                tail = (tail + [line])[-keep:]
    return proc.returncode, "\n".join(tail)


class BuildahBuilder:
    name = "buildah"

    def __init__(self, executable: str | None = None) -> None:
        found = executable or shutil.which("buildah")
        if not found:
            raise MlpackError("buildah is not installed", "apt-get install buildah, or use --builder docker")
        self.executable = found

    def _cmd(self, *args: str) -> list[str]:
        return [self.executable, *args]

    def preflight(self, platform: str) -> None:
        # buildah runs a foreign image's RUN steps on this machine: they need qemu through binfmt_misc.
        problem = emulation_problem(platform)
        if problem is not None:
            raise problem

    def build(self, context: Path, dockerfile: Path, ref: str, platform: str,
              build_args: dict[str, str], log: Log, timestamp: int | None = None) -> BuiltImage:
        with tempfile.TemporaryDirectory(prefix="mlpack-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            # --timestamp sets the image's and its history's created time and every file's
            # mtime in the layers: the same context on the same base gives the same image id.
            reproducible = ["--timestamp", str(timestamp)] if timestamp is not None else []
            command = self._cmd(
                "build", "--isolation", "chroot", "--platform", platform, "--layers=false", "--format", "docker",
                *reproducible, "--iidfile", str(iidfile), "-f", str(dockerfile), "-t", ref,
                *[item for key, value in build_args.items() for item in ("--build-arg", f"{key}={value}")],
                str(context),
            )
            code, tail = _run_streaming(command, log)
            if code != 0:
                raise explain_build_failure(self.name, ref, platform, tail, base_image(dockerfile, build_args),
                                            "BASE_IMAGE" in build_args)
            image_id = iidfile.read_text().strip()
        if timestamp is not None:
            image_id = self._without_build_container(ref, image_id)
        return BuiltImage(ref=ref, id=_sha(image_id), platform=platform)

    def _without_build_container(self, ref: str, image_id: str) -> str:
        """Drop what buildah 1.28 writes into a Docker-format config about the container it
        built in (`container`, `container_config`, the random `Hostname`): the one part of
        an image built twice from the same context on the same base that differs. The image
        is copied out (`dir:`), its config rewritten, and pulled back under the same name;
        the returned id is the new config's digest. Layers are untouched."""
        with tempfile.TemporaryDirectory(prefix="mlpack-image-") as tmp:
            folder = Path(tmp) / "image"
            self._run_checked(("push", "--quiet", "--format", "v2s2", image_id, f"dir:{folder}"), ref)
            manifest = json.loads((folder / "manifest.json").read_text())
            old = manifest["config"]["digest"].split(":", 1)[1]
            config = json.loads((folder / old).read_bytes())
            config.pop("container", None)
            config.pop("container_config", None)
            config.get("config", {}).pop("Hostname", None)
            body = json.dumps(config, separators=(",", ":")).encode()
            new = hashlib.sha256(body).hexdigest()
            if new == old:
                return image_id
            (folder / old).unlink()
            (folder / new).write_bytes(body)
            manifest["config"].update(digest=f"sha256:{new}", size=len(body))
            (folder / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
            self._run_checked(("pull", "--quiet", f"dir:{folder}"), ref)
            self._run_checked(("tag", new, ref), ref)
            subprocess.run(self._cmd("rmi", image_id), capture_output=True, text=True)  # the first copy, if untagged
        return new

    def _run_checked(self, args: tuple[str, ...], ref: str) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True)
        if done.returncode != 0:
            raise MlpackError(f"buildah could not finish {ref} ({args[0]}): {_last_error(done.stderr)}",
                              "rerun with --debug; check the image store (buildah images)")

    def image_id(self, ref: str) -> str | None:
        done = subprocess.run(self._cmd("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref),
                              capture_output=True, text=True)
        return _sha(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None

    def push(self, ref: str, dest: str, insecure: bool, log: Log, authfile: Path | None = None) -> PushedImage:
        with tempfile.TemporaryDirectory(prefix="mlpack-digest-") as tmp:
            digestfile = Path(tmp) / "digest"
            # mlpack retries with backoff itself (see push.py), so buildah's fixed-delay retry is off.
            command = self._cmd("push", f"--tls-verify={'false' if insecure else 'true'}", "--retry", "0",
                                "--digestfile", str(digestfile),
                                *(["--authfile", str(authfile)] if authfile else []), ref, f"docker://{dest}")
            code, tail = _run_streaming(command, log)
            if code != 0 or not digestfile.is_file():
                raise classify_push_error(dest, tail)
            return PushedImage(ref=dest, digest=digestfile.read_text().strip())


class DockerBuilder:
    name = "docker"

    def __init__(self, client: object | None = None) -> None:
        import docker

        try:
            self.client = client or docker.from_env()
            self.client.ping()
        except Exception as exc:  # the SDK raises several types for "no daemon"
            raise MlpackError(f"no Docker daemon answers: {str(exc).splitlines()[0][:200]}",
                              "start Docker, set DOCKER_HOST, or use --builder buildah") from exc

    def preflight(self, platform: str) -> None:
        """Nothing to check here: the daemon (perhaps on another machine, or Docker Desktop with
        its own emulation) decides which platforms it builds, and says so if it cannot."""

    def build(self, context: Path, dockerfile: Path, ref: str, platform: str,
              build_args: dict[str, str], log: Log, timestamp: int | None = None) -> BuiltImage:
        image_id, tail = None, []
        if timestamp is not None:  # BuildKit reads it for the image's times (layers too with buildx's
            build_args = {**build_args, "SOURCE_DATE_EPOCH": str(timestamp)}  # rewrite-timestamp)
        stream = self.client.api.build(
            path=str(context), dockerfile=str(dockerfile.relative_to(context)), tag=ref, platform=platform,
            buildargs=build_args, rm=True, forcerm=True, decode=True, pull=False,
        )
        for chunk in stream:
            if "error" in chunk:
                raise explain_build_failure(self.name, ref, platform, "\n".join([*tail, chunk["error"]]),
                                            base_image(dockerfile, build_args), "BASE_IMAGE" in build_args)
            if chunk.get("stream", "").strip():
                log(f"  {chunk['stream'].rstrip()}")
                tail = [*tail, chunk["stream"].rstrip()][-40:]
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
        image_id = image_id or self.image_id(ref)
        if not image_id:
            raise MlpackError(f"docker built {ref} but reported no image id")
        return BuiltImage(ref=ref, id=_sha(image_id), platform=platform)

    def image_id(self, ref: str) -> str | None:
        import docker

        try:
            return _sha(self.client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None

    def push(self, ref: str, dest: str, insecure: bool, log: Log, authfile: Path | None = None) -> PushedImage:
        repository, _, tag = dest.rpartition(":")
        self.client.images.get(ref).tag(repository, tag)
        digest, errors = None, []
        # The daemon reads credentials itself (docker login); it decides about insecure registries.
        for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                errors.append(chunk["error"])
            elif chunk.get("status"):
                log(f"  {chunk['id']}: {chunk['status']}" if chunk.get("id") else f"  {chunk['status']}")
                # Docker sends the digest in "aux" too; podman's Docker API only in "TAG: digest: ... size: N".
                found = re.search(r"digest: (sha256:[0-9a-f]{64})", chunk["status"])
                digest = found.group(1) if found else digest
            digest = (chunk.get("aux") or {}).get("Digest", digest)
        if errors or not digest:
            raise classify_push_error(dest, "\n".join(errors) or "the daemon reported no digest")
        return PushedImage(ref=dest, digest=digest)


def base_image(dockerfile: Path, build_args: dict[str, str]) -> str | None:
    """The base a build starts from: --base-image, else the Dockerfile's `ARG BASE_IMAGE=` default."""
    if build_args.get("BASE_IMAGE"):
        return build_args["BASE_IMAGE"]
    found = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile.read_text(encoding="utf-8"), re.MULTILINE)
    return found.group(1) if found else None


def _sha(value: str) -> str:
    return value if value.startswith("sha256:") else f"sha256:{value}"


def _last_error(tail: str) -> str:
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error", ln, re.IGNORECASE)]
    return " ".join((errors or lines or ["no output"])[-1].split())[:300]


def docker_reachable() -> bool:
    """Whether a Docker daemon is configured and answers, without waiting long."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def select_builder(choice: str | None = None) -> ImageBuilder:
    """`--builder docker|buildah`, or docker when a daemon answers and buildah otherwise."""
    if choice is not None and choice not in BUILDERS:
        raise InputError(f"unknown --builder {choice!r}", f"use one of: {', '.join(BUILDERS)}")
    if choice == "docker" or (choice is None and docker_reachable()):
        return DockerBuilder()
    if choice is None and shutil.which("buildah") is None:
        raise MlpackError("no image builder found: no Docker daemon answers and buildah is not installed",
                          "start Docker, or install buildah (apt-get install buildah)")
    return BuildahBuilder()


def image_labels(builder: ImageBuilder, ref: str) -> dict[str, str]:
    """The labels of a local image (for tests and reports)."""
    if isinstance(builder, BuildahBuilder):
        done = subprocess.run(builder._cmd("inspect", "--type", "image", ref), capture_output=True, text=True,
                              check=True)
        return json.loads(done.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}
    return dict(builder.client.images.get(ref).labels)  # type: ignore[attr-defined]

