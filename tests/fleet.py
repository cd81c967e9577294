"""A simulated edge fleet on this machine, for rollout tests.

Each device is a root folder with the layout a real device has (`versions/<version>/`,
`current` -> `versions/<version>`), its own service port and agent port on 127.0.0.1,
and two processes: the real mlpack agent (`mlpack_agent.main` with the version's
agent.json) and a light device runner.

The runner stands in for `bentoml serve <current>/bento`: six BentoML servers (about
300 MiB and 3 to 4 s each to start) are too heavy for this 2-core machine. It serves the
artifact's own model with the artifact's own `mlpack_runtime` (from `bento/src`:
`load_runtime`, `parse_inputs`, `open_session`) and reports every request to the agent
through `mlpack_runtime.telemetry` exactly as the Bento's service does, over a small
standard-library HTTP server with the Bento's routes: GET /readyz, POST /predict
{"inputs": {...}}, plus GET /version.

systemd is the one other thing simulated: `python tests/fleet.py restart ROOT` stops the
device's two processes (by the PIDs in ROOT/run/), runs the rollout's device guard check
the units run as ExecStartPre (`guard.py boot ROOT`, once a rollout installed it), and
starts both again from `current`, like `systemctl restart` of the service and agent
units. The playbook calls it through `mlpack_service_manager: command`.

Faults: a device reached over SSH can go through a `Link`, a TCP proxy the test cuts
(every connection dropped, new ones refused: the device fell off the network). A test
arms a one-shot fault for a device's next restart by writing ROOT/fault: `cut` (the link
is cut right after the restart) or `power` (a power cut: its processes and the guard's
watcher die, and the link is cut); `power_on(root)` then boots it as systemd would.

    python tests/fleet.py serve ROOT      # the device runner (started by restart)
    python tests/fleet.py restart ROOT    # (re)start the runner and the agent
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PROCESSES = ("agent", "service")


# -- on the device -----------------------------------------------------------------------


def serve(root: Path) -> None:
    """The device runner: the current version's model behind the Bento's HTTP routes."""
    settings = json.loads((root / "device.json").read_text())
    version_dir = (root / "current").resolve()  # resolved once, as a service's ExecStart is
    src = version_dir / "bento" / "src"
    sys.path.insert(0, str(src))
    from mlpack_runtime import RequestError, load_runtime
    from mlpack_runtime.telemetry import InferenceReporter

    runtime = load_runtime(src / "runtime.json")
    session = runtime.open_session(src)
    reporter = InferenceReporter(runtime.labels, runtime.outputs)
    identity = {"version": version_dir.name, "model_sha256": runtime.labels.get("model_sha256", ""),
                "pid": os.getpid()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/readyz":
                self._reply(200, {"ready": True})
            elif self.path == "/version":
                self._reply(200, identity)
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._reply(404, {"error": "not found"})
            started = time.perf_counter()
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                arrays = runtime.parse_inputs(body.get("inputs") if isinstance(body, dict) else None)
            except (RequestError, ValueError) as exc:
                reporter.failure(started, "bad_request")
                return self._reply(400, {"error": str(exc)})
            model_started = time.perf_counter()
            try:
                values = session.run(None, arrays)
            except Exception as exc:  # noqa: BLE001 - answered as the Bento would: a 500
                reporter.failure(started, "model_error")
                return self._reply(500, {"error": str(exc).splitlines()[0]})
            reporter.success(started, model_started, arrays, values)
            self._reply(200, {"outputs": runtime.outputs_to_json(values)})

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", settings["service_port"]), Handler)

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def restart(root: Path) -> None:
    """Stop the device's agent and runner, then start both from `current` (systemctl restart)."""
    settings = json.loads((root / "device.json").read_text())
    run, logs = root / "run", root / "log"
    run.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    stop_processes([run / f"{name}.pid" for name in PROCESSES])
    guard = root / "rollout" / "guard.py"
    if guard.exists():  # the units' ExecStartPre
        subprocess.run([sys.executable, str(guard), "boot", str(root)], check=False, stdout=subprocess.DEVNULL)
    # How this restart reached the device: sshd sets SSH_CONNECTION for the commands it runs.
    (run / "last-restart.json").write_text(json.dumps({"ssh_connection": os.environ.get("SSH_CONNECTION")}))
    env = {
        **os.environ,
        # A folder of its own, as systemd's RuntimeDirectory, on a short path (a Unix socket's is
        # at most 107 bytes; pytest's tmp_path for a long test name is close to that).
        "MLPACK_AGENT_SOCKET": settings["agent_socket"],
        "MLPACK_AGENT_PROMETHEUS_HOST": "127.0.0.1",
        "MLPACK_AGENT_PROMETHEUS_PORT": str(settings["agent_port"]),
        "MLPACK_AGENT_BUFFER_DIR": str(root / "var" / "agent-buffer"),
        "MLPACK_AGENT_BATCH": "1",  # a device's probe is reported at once
    }
    commands = {
        "agent": [sys.executable, "-m", "mlpack_agent.main", "--config", str(root / "current" / "agent" / "agent.json")],
        "service": [sys.executable, str(HERE), "serve", str(root)],
    }
    for name in PROCESSES:
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(commands[name], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        (run / f"{name}.pid").write_text(str(proc.pid))
    fault = root / "fault"
    if fault.exists():
        kind = fault.read_text().strip()
        fault.unlink()
        if kind == "power":
            power_off(root)
        (root / "link-cut").write_text(kind)  # the test's Link watches for this file


def power_off(root: Path) -> None:
    """Everything running on the device dies at once: the service, the agent, the guard's watcher."""
    pidfiles = [root / "run" / f"{name}.pid" for name in PROCESSES] + [root / "rollout" / "watcher.pid"]
    for pidfile in pidfiles:
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)


def power_on(root: Path) -> None:
    """Boot: systemd starts the agent and service units (their ExecStartPre runs the guard)."""
    restart(root)


def stop_processes(pidfiles: list[Path], timeout_s: float = 10.0) -> None:
    """Stop the processes whose PIDs the devices recorded (ones we started), all at once,
    then forget them: SIGTERM, and SIGKILL for any still running after timeout_s."""
    pids = []
    for pidfile in pidfiles:
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (OSError, ValueError):
            pass
        pidfile.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        # A child of ours that exited is a zombie until reaped: reap it if it is ours.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


# -- on the test's side ------------------------------------------------------------------


def http_json(url: str, body: Any = None, timeout: float = 3.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (OSError, http.client.HTTPException):
        # Refused, reset, or cut off part-way (IncompleteRead: the runner was stopped while
        # answering, as a device restarting or reverting does): no answer.
        return 0, None


@dataclass
class Device:
    name: str
    root: Path
    service_port: int
    agent_port: int

    @property
    def current_version(self) -> str | None:
        link = self.root / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def installed_versions(self) -> list[str]:
        folder = self.root / "versions"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def pids(self) -> dict[str, int]:
        found = {}
        for name in PROCESSES:
            path = self.root / "run" / f"{name}.pid"
            if path.exists():
                found[name] = int(path.read_text())
        return found

    def served(self) -> dict[str, Any] | None:
        """What the runner says it serves (None if it does not answer)."""
        status, body = http_json(f"http://127.0.0.1:{self.service_port}/version")
        return body if status == 200 else None

    def predict(self, inputs: dict[str, Any]) -> tuple[int, Any]:
        return http_json(f"http://127.0.0.1:{self.service_port}/predict", {"inputs": inputs})

    def agent_metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.agent_port}/metrics", timeout=3) as response:
                return response.read().decode()
        except OSError:
            return ""

    def diagnosis(self, version: str) -> str:
        """Why the device is not ready: what its runner serves, whether its agent reports, log tails."""
        served = self.served()
        lines = [f"{self.name}: serves {served.get('version') if served else None!r} (want {version}), "
                 f"agent target_info={'target_info' in self.agent_metrics()}, pids={self.pids()}"]
        for name in PROCESSES:
            log = self.root / "log" / f"{name}.log"
            if log.exists():
                lines.append(f"  {name}.log: {log.read_text(errors='replace')[-400:]!r}")
        return "\n".join(lines)

    def restarted_over_ssh(self) -> bool:
        return bool(json.loads((self.root / "run" / "last-restart.json").read_text())["ssh_connection"])

    def stop(self) -> None:
        stop_processes([self.root / "run" / f"{name}.pid" for name in PROCESSES])

    def switch(self) -> dict[str, Any]:
        """The device guard's record of the last switch ({} before any)."""
        path = self.root / "rollout" / "switch.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def guard_log(self) -> str:
        path = self.root / "rollout" / "guard.log"
        return path.read_text() if path.exists() else ""

    def complete_version(self) -> str | None:
        """The version `current` points at if every file the rollout ships of it is there and
        matches the manifest's sha256 (None: missing, or half-written)."""
        import hashlib

        folder = self.root / "current"
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        shipped = {path: entry for path, entry in manifest["files"].items()
                   if path.split("/")[0] in ("model", "bento", "agent")}
        for path, entry in shipped.items():
            try:
                if hashlib.sha256((folder / path).read_bytes()).hexdigest() != entry["sha256"]:
                    return None
            except OSError:
                return None
        return self.current_version if shipped else None

    def stop_watcher(self) -> None:
        """End a guard watcher left running (one this test's rollout started)."""
        pidfile = self.root / "rollout" / "watcher.pid"
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


class Link:
    """A TCP proxy to sshd for one device: while up it forwards every connection; `cut()`
    drops them all and refuses new ones, as for a device that fell off the network. It
    cuts itself when the device writes ROOT/link-cut (see `restart`)."""

    def __init__(self, target_port: int, root: Path) -> None:
        import socket
        import threading

        self.target_port, self.root = target_port, root
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cut_at: float | None = None
        self._sockets: list[Any] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while self.cut_at is None:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.cut_at is not None:  # accepted as the link was cut: it never got through
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass

    def _watch(self) -> None:
        while self.cut_at is None:
            if (self.root / "link-cut").exists():
                self.cut()
                return
            time.sleep(0.05)

    def cut(self) -> None:
        import socket

        with self._lock:
            self.cut_at = time.time()
            # shutdown() wakes the thread blocked in accept(); close() alone leaves the socket
            # listening until that accept returns, and one more connection got through.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass


def free_ports(count: int) -> list[int]:
    import socket

    sockets, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


# The Python Ansible runs its modules with on a device: the system's, the one its interpreter
# discovery finds on a Debian device (the modules need nothing else). The device's own venv,
# with mlpack's runtime and model-signing, is `mlpack_device_python` (the guard, the signature
# check). Under this venv's Python the same modules cost about a fifth more CPU: they import
# optional libraries it has, such as cryptography (18 stat tasks on 10 hosts: 59 to 64 s of CPU against 51 s).
MODULE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").is_file() else sys.executable

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


class SshServer:
    """OpenSSH's sshd on 127.0.0.1 with its own host key, client key and config: a real
    SSH transport to some of the simulated devices, started and stopped by the test."""

    def __init__(self, workdir: Path) -> None:
        if SSHD is None:
            raise FileNotFoundError("sshd is not installed (apt-get install openssh-server)")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.key = self.dir / "client_ed25519"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> "SshServer":
        import getpass
        import socket

        for name in ("host_ed25519", "client_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / name)], check=True)
        (self.dir / "authorized_keys").write_text((self.dir / "client_ed25519.pub").read_text())
        config = self.dir / "sshd_config"
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {self.port}", f"HostKey {self.dir / 'host_ed25519'}",
            f"PidFile {self.dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no",
            "Subsystem sftp internal-sftp", "MaxStartups 50", "MaxSessions 50",
            # A home of the device's own: bash run by sshd reads ~/.bashrc even for a command,
            # and this machine's (pyenv init) started about 100 processes for every SSH command
            # Ansible sent, a cost no device has.
            f"SetEnv HOME={home}", "",
        ]))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
        self.log = open(self.dir / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        self.user = getpass.getuser()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()[-1000:]}")
                time.sleep(0.05)

    def host_vars(self, port: int | None = None) -> dict[str, Any]:
        return {
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": port or self.port,
            "ansible_user": self.user, "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()


class SimulatedFleet:
    """`size` devices under `base`, described by an Ansible inventory: most reached through
    Ansible's local connection, the devices at `ssh_devices` over SSH when `ssh` is given."""

    def __init__(self, base: Path, size: int = 6, artifact_name: str = "fleet",
                 ssh: SshServer | None = None, ssh_devices: tuple[int, ...] | None = None,
                 links: tuple[int, ...] = ()) -> None:
        """`ssh_devices`: by default the first and the last. `links`: devices (of `ssh_devices`)
        reached through a `Link` the test can cut."""
        if ssh_devices is None:
            ssh_devices = (0, size - 1)
        from mlpack.rollout.ansible import render_inventory

        self.base = Path(base)
        self.sockets = Path(tempfile.mkdtemp(prefix="mlpack-fleet-"))  # mode 0700
        ports = free_ports(2 * size)
        self.devices = [
            Device(f"device-{i:02d}", self.base / f"device-{i:02d}", ports[2 * i], ports[2 * i + 1])
            for i in range(size)
        ]
        for device in self.devices:
            device.root.mkdir(parents=True, exist_ok=True)
            (device.root / "device.json").write_text(json.dumps(
                {"service_port": device.service_port, "agent_port": device.agent_port,
                 "agent_socket": str(self.sockets / device.name[-2:] / "agent.sock")}))
        self.over_ssh = [d.name for i, d in enumerate(self.devices) if ssh is not None and i in ssh_devices]
        self.links = {self.devices[i].name: Link(ssh.port, self.devices[i].root)
                      for i in links if ssh is not None and self.devices[i].name in self.over_ssh}
        self.inventory = self.base / "inventory.yaml"
        self.inventory.write_text(render_inventory(artifact_name, [
            {"name": d.name, "vars": {
                # The control node reaches each "device" over SSH or through Ansible's local
                # connection; everything device-specific is in these variables.
                **(ssh.host_vars(self.links[d.name].port if d.name in self.links else None)
                   if d.name in self.over_ssh else {"ansible_connection": "local"}),
                "ansible_python_interpreter": MODULE_PYTHON,
                "mlpack_device_python": sys.executable,  # the device's venv: it has model-signing
                "mlpack_root": str(d.root),
                "mlpack_service_port": d.service_port,
                "mlpack_agent_port": d.agent_port,
                "mlpack_service_manager": "command",
                "mlpack_restart_command": f"{sys.executable} {HERE} restart {d.root}",
            }} for d in self.devices
        ]))

    def install(self, artifact: Path, timeout_s: float = 180.0) -> str:
        """Flash every device with `artifact` (the factory image), start it, wait until ready
        (a bound, not a speed: ten devices started twenty Python processes at once, which on two
        busy cores took over 60 s in full `make test` runs)."""
        import tarfile

        from mlpack.rollout.release import read_release, write_bundle

        release = read_release(artifact)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = write_bundle(release, Path(tmp) / "bundle.tar.gz")
            for device in self.devices:
                target = device.root / "versions" / release.version
                target.mkdir(parents=True)
                with tarfile.open(bundle) as tar:
                    tar.extractall(target, filter="data")
                os.symlink(f"versions/{release.version}", device.root / "current")
                restart(device.root)
        self.wait_serving(release.version, timeout_s)
        return release.version

    def wait_serving(self, version: str, timeout_s: float = 60.0) -> None:
        self.wait_serving_on(self.devices, version, timeout_s)

    def wait_serving_on(self, devices: list[Device], version: str, timeout_s: float = 60.0) -> None:
        """Until each of `devices` serves `version` and its agent reports."""
        deadline = time.monotonic() + timeout_s
        pending = list(devices)
        while pending:
            pending = [d for d in pending if (d.served() or {}).get("version") != version
                       or "target_info" not in d.agent_metrics()]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"devices not serving {version}: {[d.name for d in pending]}\n"
                                   + "\n".join(d.diagnosis(version) for d in pending[:3]))
            time.sleep(0.1)

    def stop(self) -> None:
        for device in self.devices:
            device.stop_watcher()
        stop_processes([d.root / "run" / f"{name}.pid" for d in self.devices for name in PROCESSES])
        for link in self.links.values():
            link.cut()
        shutil.rmtree(self.sockets, ignore_errors=True)


if __name__ == "__main__":
    command, root = sys.argv[1], Path(sys.argv[2])
    {"serve": serve, "restart": restart}[command](root)
