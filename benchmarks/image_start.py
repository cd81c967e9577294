"""How fast a server image starts, with its bytecode and without: writes the "Image start" section of BENCHMARKS.md.

    python -m benchmarks.image_start                 # build the x86-cpu demo image, measure, update BENCHMARKS.md
    python -m benchmarks.image_start --no-write      # print only
    python -m benchmarks.image_start --quick --check [--artifact DIR]   # CI: seconds, writes nothing

Server images run on a read-only root file system (docs/kubernetes.md), so Python can
write no bytecode there: whatever an image does not ship compiled is compiled again by
every server, worker, agent and health check at every start. mlpack's images ship it
(templates/container/server/Dockerfile.j2). Measured here: two containers of the same
image (`buildah from`), one as built and one with every `__pycache__` folder removed (the
image as it was before), each mounted and its CMD (`python3 -m bentoml serve ...`) run in
a chroot as the image's user with the image's environment, as a runtime would start it
without a daemon (none here): /proc and /dev bound in, /etc/hosts naming localhost, which
runtimes provide. A start ends when /readyz answers 200; measured are the seconds to that
and the CPU seconds the server's processes used by then, the two containers in turn
(A B A B ...), medians. `--quick --check` starts each twice and checks that the image as
built is ready in at most QUICK_LIMIT of the time the one without bytecode takes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.markdown import write_section
from benchmarks.quick import Ratio, demo_image, report, writing_parser
from tests.agent_harness import free_port

RUNS, QUICK_RUNS = 5, 2
# --quick: ready in at most this share of the time without bytecode. The full run measured
# about 0.4 (BENCHMARKS.md "Image start"); an image that lost its bytecode measures 1.0.
QUICK_LIMIT = 0.75
READY_TIMEOUT_S = 120
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # found here: the image's PATH is the child's


@dataclass(frozen=True)
class Start:
    seconds: float  # to the first 200 from /readyz
    cpu_s: float  # user + system of the server's processes by then
    processes: int


class Container:
    """A container of the image, mounted, that its CMD can be started in (chroot)."""

    def __init__(self, image: str, without_bytecode: bool) -> None:
        self.name = _buildah("from", "--pull=never", image).strip()
        self.root = Path(_buildah("mount", self.name).strip())
        self.bytecode = bytecode_size(self.root)
        if without_bytecode:
            for folder in list(self.root.rglob("__pycache__")):
                shutil.rmtree(folder)
        (self.root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
        self.bound = []
        for system in ("proc", "dev"):
            (self.root / system).mkdir(exist_ok=True)
            subprocess.run(["mount", "--bind", f"/{system}", str(self.root / system)], check=True)
            self.bound.append(self.root / system)

    def start(self, config: dict, port: int, log: Path) -> Start:
        command = list(config["Cmd"])
        command[command.index("--port") + 1] = str(port)
        command[command.index("--host") + 1] = "127.0.0.1"
        env = dict(item.split("=", 1) for item in config["Env"])
        began = time.perf_counter()
        with open(log, "ab") as out:
            proc = subprocess.Popen([CHROOT, f"--userspec={config['User']}", str(self.root), *command], env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while not _ready(port):
                if proc.poll() is not None or time.perf_counter() - began > READY_TIMEOUT_S:
                    raise SystemExit(f"the server did not get ready: {log.read_text()[-1500:]}")
                time.sleep(0.02)
            seconds = time.perf_counter() - began
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in tree)  # user + system
            return Start(seconds, cpu, len(tree))
        finally:
            _stop(proc)

    def remove(self) -> None:
        for folder in self.bound:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        subprocess.run(["buildah", "rm", self.name], capture_output=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, as a runtime stops a container; SIGKILL after 30 s."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def bytecode_size(root: Path) -> tuple[int, int]:
    """The image's .pyc files: how many, and their bytes."""
    files = [p for p in root.rglob("*.pyc") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=True).stdout


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def measure(image: str, runs: int, work: Path) -> dict:
    config = json.loads(_buildah("inspect", "--type", "image", image))["Docker"]["config"]
    containers = {"as built": Container(image, False), "without bytecode": Container(image, True)}
    try:
        starts: dict[str, list[Start]] = {name: [] for name in containers}
        for _ in range(runs):  # in turn, so a change of load falls on both
            for name, container in containers.items():
                starts[name].append(container.start(config, free_port(), work / "serve.log"))
        return {"image": image, "runs": runs, "bytecode": containers["as built"].bytecode,
                "starts": {name: {"seconds": statistics.median(s.seconds for s in got),
                                  "cpu_s": statistics.median(s.cpu_s for s in got),
                                  "processes": max(s.processes for s in got)} for name, got in starts.items()}}
    finally:
        for container in containers.values():
            container.remove()


def ratios(result: dict, limit: float) -> list[Ratio]:
    built, bare = result["starts"]["as built"], result["starts"]["without bytecode"]
    return [Ratio("x86-cpu image ready / the same without bytecode, seconds", built["seconds"], bare["seconds"], limit),
            Ratio("x86-cpu image ready / the same without bytecode, CPU seconds", built["cpu_s"], bare["cpu_s"], limit)]


def section(result: dict) -> str:
    built, bare = result["starts"]["as built"], result["starts"]["without bytecode"]
    files, size = result["bytecode"]
    rows = [f"| {name} | {s['seconds']:.2f} s | {s['cpu_s']:.2f} s | {s['processes']} |"
            for name, s in result["starts"].items()]
    return "\n".join([
        "## Image start",
        "",
        "Produced by `python -m benchmarks.image_start` (the x86-cpu demo image, built with buildah on the offline "
        "stand-in base; each container's CMD started in a chroot as its user, no daemon here; "
        f"{result['runs']} starts each, in turn, medians).",
        "The image's root file system is read-only where it runs, so Python can cache no bytecode there: what the "
        "image does not ship compiled is compiled at every start of the server, its workers, the agent and each "
        f"health check. The image ships {files:,} `.pyc` files ({size / 1e6:.1f} MB uncompressed); the other "
        "container is the same image with every `__pycache__` folder removed.",
        "",
        "| container | ready (/readyz 200) | CPU by then | processes |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"With its bytecode the image is ready in {built['seconds'] / bare['seconds']:.2f}x the time and "
        f"{built['cpu_s'] / bare['cpu_s']:.2f}x the CPU. What it saves is CPU time, so on slower cores (an edge "
        "device's) it saves more seconds; that is not measured here (no arm64 machine, and emulation is no measure).",
        "",
    ])


def main() -> None:
    args = writing_parser(__doc__, "x86-cpu").parse_args()
    with tempfile.TemporaryDirectory(prefix="image-start-") as tmp:
        work = Path(tmp)
        with demo_image(args.artifact, work, quiet=args.quick) as (_, image):
            result = measure(image, QUICK_RUNS if args.quick else RUNS, work)
    if args.quick:
        raise SystemExit(report(ratios(result, QUICK_LIMIT), args.check))
    text = section(result)
    print(text)
    if not args.no_write:
        write_section("Image start", text)


if __name__ == "__main__":
    main()
