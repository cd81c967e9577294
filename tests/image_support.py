"""Helpers for the image tests: the tools they need, a real registry, running an image.

The registry is Debian's `docker-registry` (the CNCF distribution server) on 127.0.0.1,
on a free port, with its storage in a temporary folder. Images run from buildah's store:
amd64 with `buildah run --isolation chroot`; arm64 under qemu-user in a plain chroot of
the image's root file system without /sys (onnxruntime's cpuinfo segfaults under qemu
when /sys/devices/system/cpu is visible, and buildah's chroot isolation always binds /sys).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

from .agent_harness import free_port
from .manifests import edit_json

QEMU_BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")

requires_image_tools = pytest.mark.requires_tool(
    "buildah", "docker-registry", "debootstrap",
    hint="apt-get install buildah docker-registry debootstrap (bash .ci/image-setup.sh)",
)
requires_podman = pytest.mark.requires_tool("podman", hint="apt-get install podman (bash .ci/image-setup.sh)")


def arm64_emulation() -> bool:
    return QEMU_BINFMT.is_file() and QEMU_BINFMT.read_text().startswith("enabled")


requires_arm64_emulation = pytest.mark.requires_tool(
    "qemu-aarch64 (binfmt_misc)", present=arm64_emulation,
    hint="apt-get install qemu-user-static binfmt-support, binfmt_misc mounted (bash .ci/image-setup.sh)",
)


def bcrypt_hash(password: str) -> str:
    """docker-registry's htpasswd takes bcrypt only (the bcrypt package, a test dependency)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


@contextmanager
def registry(storage: Path, read_only: bool = False, user: tuple[str, str] | None = None) -> Iterator[str]:
    """A docker-registry on 127.0.0.1 (read-only, or with one htpasswd user); yields its host:port."""
    port = free_port()
    storage.mkdir(parents=True, exist_ok=True)
    config = storage.parent / f"{storage.name}-{port}.yml"
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if read_only else ""
    auth = ""
    if user is not None:
        htpasswd = storage.parent / f"{storage.name}-{port}.htpasswd"
        htpasswd.write_text(f"{user[0]}:{bcrypt_hash(user[1])}\n")
        auth = f"auth:\n  htpasswd:\n    realm: mlpack-test\n    path: {htpasswd}\n"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n{maintenance}{auth}"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(storage.parent / f"{storage.name}-{port}.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{host}/v2/", timeout=1).status_code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(storage.parent / log.name).read_text()[-500:]}")
            time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def buildah(*args: str, store: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """buildah, on the default image store or on a private one (`store`, for fresh pulls)."""
    where = ["--root", str(store / "root"), "--runroot", str(store / "run")] if store else []
    done = subprocess.run(["buildah", *where, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed: {done.stderr[-1500:]}")
    return done


def image_config(ref: str, store: Path | None = None) -> dict:
    return json.loads(buildah("inspect", "--type", "image", ref, store=store).stdout)


def run_python(ref: str, script: str, *args: str, store: Path | None = None, timeout: float = 300) -> str:
    """Run `python3 -c script args` inside an image as its USER with its ENV; return stdout."""
    info = image_config(ref, store)
    config = info["Docker"]["config"]
    arch = info["OCIv1"]["architecture"]
    container = buildah("from", "--pull=never", ref, store=store).stdout.strip()
    where = ["--root", str(store / "root"), "--runroot", str(store / "run")] if store else []
    try:
        if arch == "amd64":
            command = ["buildah", *where, "run", "--isolation", "chroot", container, "--",
                       "python3", "-c", script, *args]
        else:
            # The image has no shell or env(1): chroot straight into its python3, with its ENV.
            root = Path(buildah("mount", container, store=store).stdout.strip())
            env = dict(item.split("=", 1) for item in config.get("Env", []))
            python = next(f"{d}/python3" for d in env.get("PATH", "/usr/bin").split(":")
                          if (root / d.lstrip("/") / "python3").is_symlink())
            chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # found before PATH becomes the image's
            command = [chroot, f"--userspec={config.get('User') or '0:0'}", str(root), python, "-c", script, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=env if arch != "amd64" else None)
        if done.returncode != 0:
            raise AssertionError(f"python in {ref} ({arch}) failed:\n{done.stderr[-2000:]}")
        return done.stdout
    finally:
        buildah("rm", container, store=store, check=False)


@contextmanager
def serving(ref: str, command: list[str], env: dict[str, str], store: Path | None = None) -> Iterator[str]:
    """Run `command` in a working container of `ref` (buildah run, chroot isolation, the host's
    network) until the block ends; yields the container's name, for more commands beside it."""
    where = ["--root", str(store / "root"), "--runroot", str(store / "run")] if store else []
    container = buildah("from", "--pull=never", ref, store=store).stdout.strip()
    procs: list[subprocess.Popen] = []

    # Every process started here carries this mark in its environment (see the cleanup).
    mark = f"MLPACK_TEST_CONTAINER={container}"

    def start(cmd: list[str], extra_env: dict[str, str]) -> subprocess.Popen:
        flags = [item for key, value in {**env, **extra_env}.items() for item in ("--env", f"{key}={value}")]
        flags += ["--env", mark]
        proc = subprocess.Popen(["buildah", *where, "run", "--isolation", "chroot", *flags, container, "--", *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    start(command, {})
    try:
        yield container, start  # type: ignore[misc]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # BentoML's workers start sessions of their own and outlive `buildah run`: stop
        # every process that carries this container's mark.
        _kill_marked(mark)
        buildah("rm", container, store=store, check=False)


def _kill_marked(mark: str) -> None:
    needle = mark.encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            continue


def wait_for(url: str, seconds: float = 60) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {seconds}s")
        time.sleep(0.5)


class Flaky503Proxy(http.server.ThreadingHTTPServer):
    """Forwards to a registry, answering 503 to the first `failures` requests."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.seen = upstream, failures, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: Flaky503Proxy

    def _forward(self) -> None:
        self.server.seen += 1
        if self.server.seen <= self.server.failures:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = requests.request(self.command, f"http://{self.server.upstream}{self.path}", data=body,
                                    headers=headers, allow_redirects=False)
        self.send_response(upstream.status_code)
        for key, value in upstream.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    do_GET = do_PUT = do_HEAD = do_POST = do_PATCH = _forward

    def log_message(self, *args: object) -> None:
        pass


def own_image_name(artifact: Path, owner: str) -> Path:
    """Name the image of `artifact` (a test's copy) after the test file that builds it:
    `mlpack-test/OWNER/NAME`. Copies of one demo artifact otherwise build under one name:tag in
    the machine's one image store, and a file running beside another on the next worker finds
    its tag moved to the other's image, or the image gone with the other's clean-up."""
    edit_json(artifact, lambda m: m["image"].update(
        repository=f"mlpack-test/{owner}/{m['image']['repository'].rsplit('/', 1)[-1]}"))
    return artifact
