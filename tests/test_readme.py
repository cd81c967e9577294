"""Every command README.md shows works as typed.

- The quick start runs in a fresh copy of the repository, as a user with a clone types
  it: `make demo` for real (no .venv before), then the `.venv/bin/mlpack` lines. `make
  test` is the one exception: it would run this test inside itself, so its recipe is
  read (`make -n test`): the set-up script first, then pytest.
- The install section's clone lines run as typed inside a fresh copy of the repository
  (not named `mlpack`, as a clone may not be), without the quick start's .venv, in the
  background of the wheel's test (both wait mostly on pip's index requests).
- The install section and the commands table run from the wheel, in an empty folder:
  `pip install 'dist/...whl[aws,edge]'` as typed, then each row of the table with
  concrete values for its placeholders. Rows that need outside services: `deploy` runs
  against the moto server (--dry-run), `image` and `push` need base images and a
  registry (tests/test_image.py runs them end to end), so here `image --help` parses and
  `push` without an image gives its one-line error, and `rollout` without the `edge`
  extra gives the documented missing-extra line (tests/test_rollout*.py run fleets).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from .agent_harness import free_port, wait_for
from .conftest import REPO, user_environ, uv
from .models import linear_model
from .signing_support import make_keys
from .moto_support import REGION, server  # noqa: F401  (server: the moto server fixture)
from .demo_data import demo_rows
from .served_apps import alive, descendants

pytestmark = pytest.mark.slow
README = REPO / "README.md"
MODEL = "path/to/model.onnx"  # the README's own placeholder path, made real in the folder


# ---- what README.md shows -----------------------------------------------------------


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def console_blocks(title: str) -> list[list[str]]:
    """The lines of each ```console block of a section, in order."""
    return [[line.strip() for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```console\n(.*?)```", section(title), re.S)]


def console_commands(title: str) -> list[str]:
    """The lines of the ```console blocks of a section, in order."""
    return [line for block in console_blocks(title) for line in block]


def table_commands() -> list[str]:
    return re.findall(r"^\| `(mlpack [^`]+)` \|", section("Commands"), re.M)


def test_the_readme_shows_the_commands_this_test_types() -> None:
    assert console_commands("Quick start") == [
        "make demo",
        ".venv/bin/mlpack serve out/digits-demo-x86-cpu",
        ".venv/bin/mlpack report out/digits-demo-x86-cpu --open",
        f".venv/bin/mlpack build {MODEL} --target aws-lambda --out out",
        "make test",
    ]
    assert console_blocks("Install as a user") == [
        ["python3 -m venv .venv", ".venv/bin/pip install --upgrade pip",
         ".venv/bin/pip install 'dist/mlpack-0.1.0-py3-none-any.whl[aws,edge]'"],
        ["python3 -m venv .venv", ".venv/bin/pip install --upgrade pip", ".venv/bin/pip install '.[aws,edge]'"],
    ]
    assert sorted(table_commands()) == sorted(TABLE)


# ---- running them -------------------------------------------------------------------


def clean_env(folder: Path, **extra: str) -> dict[str, str]:
    """This shell's environment without this test run's venv: as a user's would be (Python
    writes bytecode too, which CI machines often turn off with PYTHONDONTWRITEBYTECODE)."""
    env = user_environ(drop=("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    env["MLPACK_PROGRESS"] = "plain"
    env.update(extra)
    return env


def typed(command: str, folder: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run one README line through bash, as typed."""
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(command: str, folder: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = typed(command, folder, env, timeout)
    assert done.returncode == 0, f"{command!r} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def one_line_error(command: str, folder: Path, env: dict[str, str]) -> str:
    done = typed(command, folder, env)
    assert done.returncode != 0 and done.stdout == "", (command, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (command, done.stderr)
    return lines[0]


def serve_answers_and_stops(command: str, folder: Path, env: dict[str, str], stop: signal.Signals) -> None:
    """Start `mlpack serve` as typed; /readyz, a prediction and the agent's count; then stop it."""
    log = folder / "serve.out"
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=folder, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Ctrl-C or SIGTERM" in log.read_text() or proc.poll() is not None, 240, interval_s=0.5,
                 what="mlpack serve to print its URLs")
        assert proc.poll() is None, log.read_text()[-3000:]
        printed = log.read_text()
        base = re.search(r"POST (http://\S+)/predict", printed).group(1)
        metrics = re.search(r"GET  (http://\S+/metrics)", printed).group(1)
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        pixels, labels = demo_rows(2)
        reply = httpx.post(f"{base}/predict", json={"inputs": {"pixels": pixels.tolist()}}, timeout=60)
        assert reply.status_code == 200 and reply.json()["outputs"]["label"] == labels.tolist()
        wait_for(lambda: "mlpack_inference_requests_total{" in httpx.get(metrics, timeout=5).text, 30,
                 what="the agent to count the request")
        running = descendants(proc.pid)
        proc.send_signal(stop)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [pid for pid in running if alive(pid)] == []


def repository_copy(dest: Path) -> Path:
    """The repository's files as a clone has them: tracked and not ignored, no .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_quick_start_works_as_typed_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = repository_copy(tmp_path / "mlpack")
    env = clean_env(clone, BROWSER="true")  # --open: a "browser" that accepts the URL
    quick = console_commands("Quick start")

    ok(quick[0], clone, env, timeout=1800)  # make demo: .venv, mlpack, the demo build
    artifact = clone / "out" / "digits-demo-x86-cpu"
    assert (artifact / "manifest.json").is_file() and (artifact / "report.html").is_file()

    serve_answers_and_stops(quick[1], clone, env, signal.SIGINT)  # Ctrl-C
    shown = ok(quick[2], clone, env)
    assert shown.stdout.strip() == str(artifact.resolve() / "report.html")
    (clone / MODEL).parent.mkdir(parents=True)
    linear_model(clone / MODEL)
    ok(quick[3], clone, env)
    assert (clone / "out" / "model-aws-lambda" / "lambda" / "function.zip").is_file()

    recipe = ok(f"{quick[4]} -n", clone, env).stdout  # make test, read rather than run (it runs this test)
    assert recipe.index("bash .ci/setup.sh tests") < recipe.index("-m pytest")


# ---- the install section and the commands table, from the wheel ----------------------


def check_targets(run, folder: Path) -> None:
    names = [line.split()[0] for line in run("mlpack targets").stdout.splitlines()]
    assert {"x86-cpu", "cuda-gpu", "arm-edge", "aws-lambda"} <= set(names)


def check_inspect(run, folder: Path) -> None:
    assert "input   x: float32" in run(f"mlpack inspect {MODEL}").stdout


def check_build(run, folder: Path) -> None:
    run("mlpack build -t x86-cpu --out out")  # no MODEL: the demo
    run(f"mlpack build {MODEL} -t aws-lambda --out out")
    assert (folder / "out" / "digits-demo-x86-cpu" / "bento").is_dir()
    assert (folder / "out" / "model-aws-lambda" / "lambda" / "function.zip").is_file()


def check_optimize(run, folder: Path) -> None:
    run(f"mlpack optimize {MODEL} -t x86-cpu --out optimized")
    assert {"model.onnx", "report.html"} <= {p.name for p in (folder / "optimized").iterdir()}


def check_report(run, folder: Path) -> None:
    shown = run("mlpack report out/digits-demo-x86-cpu --open")
    assert shown.stdout.strip().endswith("out/digits-demo-x86-cpu/report.html")


def check_serve(run, folder: Path) -> None:
    env = clean_env(folder, PATH=f"{folder / '.venv' / 'bin'}:{clean_env(folder)['PATH']}")
    port, agent_port = free_port(), free_port()
    serve_answers_and_stops(f"mlpack serve out/digits-demo-x86-cpu --port {port} --agent-port {agent_port}",
                            folder, env, signal.SIGTERM)


def check_sign(run, folder: Path) -> None:
    keys = make_keys(folder / "keys", "KEY")
    assert "signature.sig" in run(f"mlpack sign out/digits-demo-x86-cpu --key {keys.private}").stdout


def check_verify(run, folder: Path) -> None:
    checked = run(f"mlpack verify out/digits-demo-x86-cpu --key {folder / 'keys' / 'KEY.pub.pem'}").stdout
    assert checked.startswith("digits-demo-x86-cpu: ") and "signature verified" in checked, checked


def check_image(run, folder: Path) -> None:
    assert "OCI image" in run("mlpack image --help").stdout


def check_push(run, folder: Path) -> None:
    line = run.error("mlpack push out/digits-demo-x86-cpu --to 127.0.0.1:5000/demo/digits:1")
    assert line == ("error: digits-demo-x86-cpu has no built image; run "
                    f"`mlpack image {folder.resolve() / 'out' / 'digits-demo-x86-cpu'}` first")


def check_iac(run, folder: Path) -> None:
    assert "wrote" in run("mlpack iac out/model-aws-lambda").stdout


def check_deploy(run, folder: Path) -> None:
    done = run("mlpack deploy out/model-aws-lambda --dry-run -q", aws=True)
    assert "dry run, change set deleted" in done.stdout


def check_rollout(run, folder: Path) -> None:
    (folder / "fleet.yaml").write_text("all:\n  hosts:\n    device-1:\n      ansible_host: 127.0.0.1\n")
    line = run.error("mlpack rollout out/digits-demo-x86-cpu --fleet fleet.yaml", without_extras=True)
    assert line.endswith("; pip install 'mlpack[edge]'")


TABLE = {
    "mlpack targets": check_targets,
    "mlpack inspect MODEL": check_inspect,
    "mlpack build [MODEL] -t T": check_build,
    "mlpack optimize MODEL -t T": check_optimize,
    "mlpack report ARTIFACT": check_report,
    "mlpack serve ARTIFACT": check_serve,
    "mlpack sign ARTIFACT --key KEY.pem": check_sign,
    "mlpack verify ARTIFACT": check_verify,
    "mlpack image ARTIFACT": check_image,
    "mlpack push ARTIFACT... --to REGISTRY/REPO[:TAG]": check_push,
    "mlpack iac ARTIFACT": check_iac,
    "mlpack deploy ARTIFACT": check_deploy,
    "mlpack rollout ARTIFACT --fleet F": check_rollout,
}


class Runner:
    """Runs table commands in the folder, with the wheel's venv first on PATH."""

    def __init__(self, folder: Path, bare: Path, aws_endpoint: str) -> None:
        self.folder, self.bare = folder, bare
        self.env = clean_env(folder, BROWSER="true")
        self.env["PATH"] = f"{folder / '.venv' / 'bin'}{os.pathsep}{self.env['PATH']}"
        self.aws = {"AWS_ENDPOINT_URL": aws_endpoint, "AWS_ACCESS_KEY_ID": "AKIAMLPACKTEST",
                    "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": REGION,
                    "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
                    "AWS_EC2_METADATA_DISABLED": "true"}

    def _env(self, aws: bool, without_extras: bool) -> dict[str, str]:
        env = {**self.env, **(self.aws if aws else {})}
        if without_extras:  # the bare venv instead of the one with extras, none of its tools on PATH
            env["PATH"] = f"{self.bare / 'bin'}{os.pathsep}{clean_env(self.folder)['PATH']}"
        return env

    def __call__(self, command: str, aws: bool = False, without_extras: bool = False) -> subprocess.CompletedProcess:
        return ok(command, self.folder, self._env(aws, without_extras))

    def error(self, command: str, aws: bool = False, without_extras: bool = False) -> str:
        return one_line_error(command, self.folder, self._env(aws, without_extras))


def test_the_install_section_and_every_command_in_the_table_work_from_the_wheel(
    mlpack_wheel: Path, tmp_path: Path, server: str,
) -> None:
    # The install from a clone runs beside this test's own commands: both spend minutes on
    # pip's index requests, which overlap instead of adding up.
    from_clone = InstallFromClone(tmp_path / "checkout")
    folder = tmp_path / "user"
    (folder / "dist").mkdir(parents=True)
    shutil.copy(mlpack_wheel, folder / "dist" / mlpack_wheel.name)
    # As the clone's install below: Python writes the .pyc of what the table's commands
    # import on first use, where pip would byte-compile all 15,000 files it installs.
    env = clean_env(folder, PIP_NO_COMPILE="0")
    for command in console_blocks("Install as a user")[0]:
        ok(command, folder, env, timeout=1800)
    assert ok(".venv/bin/mlpack --version", folder, env).stdout.startswith("mlpack 0.1.0 (python ")

    # The same wheel without extras: the commands that need one name it.
    bare = tmp_path / "bare"
    uv("venv", "--python", str(folder / ".venv" / "bin" / "python"), str(bare))
    uv("pip", "install", "--python", str(bare / "bin" / "python"), str(mlpack_wheel))

    (folder / MODEL).parent.mkdir(parents=True)
    linear_model(folder / MODEL)
    run = Runner(folder, bare, server)
    for check in TABLE.values():  # in README's order: build before the rows that use its artifacts
        check(run, folder)
    assert run.error("mlpack deploy out/model-aws-lambda", without_extras=True) == (
        "error: `mlpack deploy` needs aws-sam-translator, which is not installed; pip install 'mlpack[aws]'")
    from_clone.check()


class InstallFromClone:
    """The install section's clone lines, typed inside a fresh copy of the repository (not
    named `mlpack`, as a clone need not be), in the background; `check` waits for them and
    checks the result: mlpack installed from the clone's source, with both extras."""

    def __init__(self, clone: Path) -> None:
        self.clone = repository_copy(clone)
        # Its venv runs one command: pip need not byte-compile all it installs (about 30 of
        # the install's 70 CPU seconds here). PIP_NO_COMPILE sets pip's `compile` option, so
        # "0" is --no-compile ("1" would compile).
        self.env = clean_env(self.clone, PIP_NO_COMPILE="0")
        self.lines = console_blocks("Install as a user")[1]
        self.log = open(clone.parent / "install-from-clone.log", "w+")
        self.proc = subprocess.Popen(["bash", "-c", " && ".join(self.lines)], cwd=self.clone, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def check(self) -> None:
        try:
            code = self.proc.wait(timeout=1800)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.log.seek(0)
        output = self.log.read()
        self.log.close()
        assert code == 0, f"{self.lines} failed:\n{output[-3000:]}"
        assert ok(".venv/bin/mlpack --version", self.clone, self.env).stdout.startswith("mlpack 0.1.0 (python ")
        imported = ok(".venv/bin/python -c 'import mlpack, samtranslator, ansible; print(mlpack.__file__)'",
                      self.clone, self.env)
        assert "site-packages" in imported.stdout  # a regular install of the clone's source

