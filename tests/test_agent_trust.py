"""An agent that believes only its model (issue 21, finding 3), against the real agent process.

Who may send: the socket sits in a folder only the agent's user can enter, and a datagram
from a process of another user (a child of this test that drops to `nobody` after getting
hold of a connected socket) is refused and counted. What is believed: labels never come
from datagrams, values out of range are refused one by one, and counted by reason. What it
costs: 3,000 label sets do not grow /metrics, and 18,500 datagrams of new labels, kinds and
classes with the collector down keep the buffer folder under its cap and the agent's
memory (VmHWM, from /proc) bounded. Also: the execution provider info metric, a pid
namespace policy, and the Prometheus endpoint's connection cap, TLS and basic auth.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlpack_agent.client import EventClient
from mlpack_agent.config import LimitsConfig
from mlpack_agent.exposition import MAX_CONNECTIONS

from .agent_harness import AgentProcess, free_port, wait_for
from .faults import nodeid, record_fault
from .pyramid import local

NOBODY = 65534
AS_ROOT = pytest.mark.requires_tool(
    "root", present=lambda: os.geteuid() == 0,
    hint="run the tests as root (CI does): a child process drops to another user")
LABEL_VALUES = LimitsConfig().label_values
OK_EVENT = [1.0, 2.0, 1, 64, True, None, [3], None]


def datagram(events: list, **fields) -> bytes:
    return json.dumps({"v": 1, "pid": os.getpid(), "dropped": 0, **fields, "events": events}).encode()


def sender(agent: AgentProcess) -> socket.socket:
    """A plain datagram socket to the agent, as a process of this test's user (the agent's)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(30)  # blocks while the agent is behind, never forever
    sock.connect(agent.socket)
    return sock


def series(text: str) -> set[tuple[str, tuple]]:
    """Every sample's name and labels in a /metrics text (its value left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items())))
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
@local
def agent(tmp_path_factory: pytest.TempPathFactory):
    process = AgentProcess(tmp_path_factory.mktemp("trust") / "agent").start()
    yield process
    process.stop()


def test_the_socket_is_in_a_folder_only_the_agents_user_can_enter(agent: AgentProcess) -> None:
    folder = Path(agent.socket).parent
    assert folder.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(agent.socket).st_mode) == 0o600


@AS_ROOT
def test_another_users_process_cannot_reach_the_socket_and_its_forged_datagrams_are_refused(
    agent: AgentProcess,
) -> None:
    requests, dropped = agent.value("mlpack_inference_requests_total"), agent.value("mlpack_agent_client_dropped_total")
    refused = agent.value("mlpack_agent_refused_total", reason="sender")
    forged = datagram([OK_EVENT] * 100, dropped=10**12, labels={"model_name": "forged"})
    n = 50
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the attacker: holds a socket connected while it could, then runs as nobody
        code = 1
        try:
            os.close(read_end)
            held = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            held.connect(agent.socket)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(forged, agent.socket)
                reached = b"y"
            except PermissionError:
                reached = b"n"
            for _ in range(n):
                held.send(forged)
            os.write(write_end, reached)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    reached = os.read(read_end, 1)
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reached == b"n", "another user could address the agent's socket through its folder"
    wait_for(lambda: agent.value("mlpack_agent_refused_total", reason="sender") == refused + n, 10,
             what="the forged datagrams to be refused")
    # Nothing of them was believed; the agent's own user still is.
    honest = EventClient({}, socket_path=agent.socket, batch=1, linger_s=0)
    honest.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    wait_for(lambda: agent.value("mlpack_inference_requests_total") == requests + 1, 10,
             what="the honest event to count")
    assert agent.value("mlpack_agent_client_dropped_total") == dropped
    log_line = next(li for li in (agent.workdir / "agent.log").read_text().splitlines() if "refused datagrams" in li)
    record_fault("forged-sender", nodeid(),
                 f"a process of uid {NOBODY} (the agent runs as root) sends {n} datagrams of 100 events each with "
                 "dropped=1e12 and its own labels: first by the socket's path, then through a socket connected "
                 "before it dropped privileges",
                 log_line.split(": ", 1)[-1] + f"; mlpack_agent_refused_total{{reason=\"sender\"}} = {n}",
                 lost=agent.value("mlpack_inference_requests_total") - requests - 1,
                 detail="the path gave EACCES (the socket's folder is mode 0700); all "
                        f"{n} datagrams refused by their kernel-given uid; requests and client_dropped unchanged; the "
                        "agent's own user still counted")


def test_values_out_of_range_are_refused_one_by_one_and_counted(agent: AgentProcess) -> None:
    sock = sender(agent)
    requests = agent.value("mlpack_inference_requests_total")
    dropped = agent.value("mlpack_agent_client_dropped_total")
    before = {r: agent.value("mlpack_agent_refused_total", reason=r)
              for r in ("invalid_event", "invalid_field", "implausible_dropped", "malformed")}
    bad_events = [
        [-5.0, 2.0, 1, 64, True, None, None, None],  # a negative duration
        [1.0, 1e300, 1, 64, True, None, None, None],  # absurd
        [1.0, 2.0, -1, 64, True, None, None, None],  # a negative batch
        [1.0, 2.0, 1.5, 64, True, None, None, None],  # not an integer
        [1.0, 2.0, 1, 2**50, True, None, None, None],  # a petabyte input
        [1.0, 2.0, 1, 64, 1, None, None, None],  # ok must be a boolean
        [1.0, 2.0, 1, 64, False, "rm -rf /", None, None],  # an error kind of another alphabet
        [1.0, 2.0, 1, 64, True, None, [{"a": 1}], None],  # a class that is no name
        [1.0, 2.0, 1, 64, True, None, None, -1.0],  # a negative norm
        [1.0, 2.0, 1, 64, True, None],  # too short
    ]
    pid = os.getpid()
    sock.send(datagram([OK_EVENT, *bad_events], pid=pid, dropped=7))  # 1 event and 7 drops believed
    sock.send(datagram([OK_EVENT], pid=pid, dropped=-5))
    sock.send(datagram([OK_EVENT], pid=pid, dropped=1e12))  # a float
    sock.send(datagram([OK_EVENT], pid=pid, dropped=10**12))  # far beyond what a client can lose
    sock.send(datagram([OK_EVENT], pid="me", execution_provider="rm -rf /"))
    sock.send(b'{"v": 1, "events": ' + b"[" * 29_000 + b"]" * 29_000 + b"}")  # nested past the parser's limit
    sock.send(b"NaN")
    wait_for(lambda: agent.value("mlpack_agent_refused_total", reason="malformed") == before["malformed"] + 2,
             10, what="the datagrams to be handled")
    refused = {r: agent.value("mlpack_agent_refused_total", reason=r) - before[r] for r in before}
    assert refused == {"invalid_event": len(bad_events), "invalid_field": 4, "implausible_dropped": 1, "malformed": 2}
    assert agent.value("mlpack_inference_requests_total") == requests + 5
    # client_dropped_total took the 7, and neither -5 nor 1e12.
    assert agent.value("mlpack_agent_client_dropped_total") == dropped + 7
    sock.close()


def test_3000_distinct_label_sets_do_not_grow_metrics(agent: AgentProcess) -> None:
    sock = sender(agent)
    requests = agent.value("mlpack_inference_requests_total")
    sock.send(datagram([OK_EVENT]))
    wait_for(lambda: agent.value("mlpack_inference_requests_total") == requests + 1, 10, what="a first event")
    before = agent.scrape()
    for i in range(3000):
        sock.send(datagram([OK_EVENT], labels={"model_name": f"m{i}", f"k{i}": f"v{i}", "mlpack.target": f"t{i}"}))
    wait_for(lambda: agent.value("mlpack_inference_requests_total") == requests + 3001, 30,
             what="3,000 datagrams counted")
    after = agent.scrape()
    busy = "mlpack_host_cpu_utilization"  # absent from a scrape when no clock tick passed since the last
    assert {s for s in series(after) if s[0] != busy} == {s for s in series(before) if s[0] != busy}
    size_after_labels = len(after)

    # Error kinds and classes do make series, up to the cap; the rest fold into "other", counted.
    errors = [s for s in series(after) if s[0] == "mlpack_inference_errors_total"]
    kinds_before = sum(1 for _, labels in errors if ("error_kind", "other") not in labels)
    folded = agent.value("mlpack_agent_refused_total", reason="label_cap")
    for i in range(3000):
        sock.send(datagram([[1.0, 2.0, 1, 64, False, f"kind_{i}", None, None], [1.0, 2.0, 1, 64, True, None,
                                                                                  [f"class {i}"], None]]))
    wait_for(lambda: agent.value("mlpack_inference_requests_total") == requests + 9001, 30,
             what="3,000 more datagrams counted")
    flooded = agent.scrape()
    errors = [s for s in series(flooded) if s[0] == "mlpack_inference_errors_total"]
    classes = [s for s in series(flooded) if s[0] == "mlpack_inference_predictions_total"]
    assert len(errors) <= LABEL_VALUES + 1 and len(classes) <= LABEL_VALUES + 1
    admitted = LABEL_VALUES - kinds_before
    assert agent.value("mlpack_inference_errors_total", error_kind="other") >= 3000 - admitted
    assert agent.value("mlpack_agent_refused_total", reason="label_cap") - folded >= 2 * 3000 - 2 * LABEL_VALUES
    sock.close()
    over = max(0, len(errors) - (LABEL_VALUES + 1)) + max(0, len(classes) - (LABEL_VALUES + 1))
    record_fault("label-flood", nodeid(),
                 "3,000 datagrams from the agent's own user, each with its own labels; then 3,000 with a new error "
                 "kind and a new class each",
                 f"/metrics {len(before):,} bytes before, {size_after_labels:,} after the label sets (the same "
                 f"series), {len(flooded):,} after the kinds and classes",
                 lost=over,
                 detail=f"{len(errors)} error-kind and {len(classes)} class series (cap {LABEL_VALUES} + other); "
                        f"the rest counted in mlpack_agent_refused_total{{reason=\"label_cap\"}}")


def test_the_execution_provider_is_one_series_with_the_latest_value(agent: AgentProcess) -> None:
    client = EventClient({}, socket_path=agent.socket, batch=1, linger_s=0)
    provider = 'mlpack_execution_provider_info{execution_provider="%s"'
    client.provider("CUDAExecutionProvider")
    wait_for(lambda: provider % "CUDAExecutionProvider" in (agent.scrape() or ""), 10, what="the provider")
    client.provider("not a provider")  # ignored by the client: it never raises
    assert client.execution_provider == "CUDAExecutionProvider"
    client.provider("CPUExecutionProvider")
    client.inference(model_ms=1.0, total_ms=2.0, batch_size=1, input_bytes=8, ok=True)
    wait_for(lambda: provider % "CPUExecutionProvider" in (agent.scrape() or ""), 10, what="the new provider")
    samples = [s for s in series(agent.scrape()) if s[0] == "mlpack_execution_provider_info"]
    assert len(samples) == 1
    assert agent.value("mlpack_execution_provider_info", execution_provider="CPUExecutionProvider") == 1


def test_the_metrics_endpoint_caps_its_connections_and_counts_the_refused(agent: AgentProcess) -> None:
    refused = agent.value("mlpack_agent_refused_total", reason="scrape_connection")
    idle = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        extra = socket.create_connection(("127.0.0.1", agent.port))
        extra.settimeout(5)
        assert extra.recv(1) == b"", "a connection past the cap is closed at once"
        extra.close()
    finally:
        for sock in idle:
            sock.close()
    # The agent frees the idle connections' slots when it sees them closed: a scrape sent
    # before that is refused too, and counted, so the wait counts the scrapes that failed.
    failed = []

    def scraped() -> bool:
        ok = agent.scrape() is not None
        failed.extend([] if ok else [1])
        return ok

    wait_for(scraped, 10, what="a scrape once the idle connections are gone")
    counted = agent.value("mlpack_agent_refused_total", reason="scrape_connection") - refused
    assert 1 <= counted <= 1 + len(failed), (counted, len(failed))


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.slow
def test_a_flood_with_the_collector_down_keeps_the_buffer_under_its_cap_and_memory_bounded(tmp_path: Path) -> None:
    cap = 4 * 1024 * 1024
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens: the collector is down
    agent = AgentProcess(tmp_path / "agent", otlp={"endpoint": down, "interval_s": 0.5, "max_backoff_s": 0.5},
                         buffer={"max_bytes": cap}).start()
    buffer = agent.workdir / "buffer"
    total, sizes = 18_500, []
    try:
        sock = sender(agent)
        rss_early = 0
        for i in range(total):
            sock.send(datagram([
                [1.0, 2.0, 1, 64, True, None, [f"class {i}"], None],
                [1.0, 2.0, 1, 64, False, f"kind_{i}", None, None],
                [1.0, 2.0, 4, 256, True, None, [i, i + 1], 0.5],
            ], labels={"model_name": f"m{i}", f"label_{i}": "x" * 32}, dropped=0))
            if i % 500 == 0:
                sizes.append(folder_bytes(buffer))
            if i == 2000:
                rss_early = agent.rss_bytes()
        wait_for(lambda: agent.value("mlpack_inference_requests_total") == 3 * total, 60, interval_s=0.5,
                 what="every event recorded")
        wait_for(lambda: agent.value("mlpack_agent_buffer_batches") >= 3, 30, what="exports in the buffer")
        sizes.append(folder_bytes(buffer))
        peak = agent.peak_rss_bytes()
        log = (agent.workdir / "agent.log").read_text()
    finally:
        agent.stop()
    assert agent.proc.returncode == 0
    assert max(sizes) <= cap, f"the buffer folder reached {max(sizes):,} bytes against a cap of {cap:,}"
    assert peak < 128 * 1024 * 1024, "the Kubernetes sidecar's memory limit is 128Mi"
    assert peak - rss_early < 16 * 1024 * 1024, "memory must not grow with the number of label sets"
    assert "Traceback" not in log
    record_fault("datagram-flood-outage", nodeid(),
                 f"{total:,} datagrams (3 events each, every one with new labels, a new error kind and new classes) "
                 "with the OTLP collector down, buffer.max_bytes 4 MiB, exports every 0.5 s",
                 f"buffer folder at most {max(sizes):,} bytes (cap {cap:,}); agent peak RSS (VmHWM) "
                 f"{peak / 2**20:.1f} MiB",
                 lost=max(0, max(sizes) - cap),
                 detail=f"RSS {rss_early / 2**20:.1f} MiB after 2,000 datagrams, peak {peak / 2**20:.1f} MiB after "
                        f"{total:,}; all {3 * total:,} events recorded")


@pytest.mark.slow
@AS_ROOT
@pytest.mark.requires_tool("unshare", "nsenter", hint="util-linux (Debian: apt-get install util-linux)")
def test_with_same_pid_namespace_only_senders_the_agent_can_see_are_believed(tmp_path: Path) -> None:
    # The agent in a pid namespace of its own (as in a container): this test's process is
    # outside it, so the kernel gives the agent pid 0 for it; nsenter puts a sender inside.
    agent = AgentProcess(tmp_path / "agent", peers={"same_pid_namespace": True},
                         prefix=["unshare", "--pid", "--fork", "--kill-child=SIGTERM"]).start()
    try:
        outside = sender(agent)
        outside.send(datagram([OK_EVENT]))
        wait_for(lambda: agent.value("mlpack_agent_refused_total", reason="sender") == 1, 10,
                 what="the outside sender to be refused")
        inner_pid = Path(f"/proc/{agent.proc.pid}/task/{agent.proc.pid}/children").read_text().split()[0]
        code = (f"import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
                f"s.sendto({datagram([OK_EVENT])!r}, {agent.socket!r})")
        subprocess.run(["nsenter", "--target", inner_pid, "--pid", "--", sys.executable, "-c", code], check=True)
        wait_for(lambda: agent.value("mlpack_inference_requests_total") == 1, 10, what="the inside sender to count")
        assert agent.value("mlpack_agent_refused_total", reason="sender") == 1
    finally:
        agent.stop()


def _https_get(url: str, context: ssl.SSLContext, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.requires_tool("openssl", hint="apt-get install openssl")
def test_metrics_over_tls_with_basic_auth_and_client_certificates(tmp_path: Path) -> None:
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    agent = AgentProcess(tmp_path / "agent", prometheus={
        "tls": {"cert_file": str(cert), "key_file": str(key), "client_ca_file": str(cert)},
        "basic_auth": {"username": "prometheus", "password_file": str(password)}})
    url = f"https://127.0.0.1:{agent.port}/metrics"
    trusting = ssl.create_default_context(cafile=str(cert))
    with_certificate = ssl.create_default_context(cafile=str(cert))
    with_certificate.load_cert_chain(str(cert), str(key))  # self-signed: its own CA
    agent.scrape = lambda: (lambda r: r[1] if r[0] == 200 else None)(  # type: ignore[method-assign]
        _https_get(url, with_certificate, ("prometheus", "s3cret")))
    agent.start()
    try:
        assert agent.value("mlpack_agent_process_memory_rss_bytes") > 0
        assert _https_get(url, with_certificate)[0] == 401
        assert _https_get(url, with_certificate, ("prometheus", "wrong"))[0] == 401
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _https_get(url, trusting, ("prometheus", "s3cret"))  # no client certificate: no handshake
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/metrics", timeout=5)  # plain HTTP
    finally:
        agent.stop()


# -- the pieces, without a process ---------------------------------------------------------


def test_the_dropped_count_can_rise_only_as_fast_as_a_client_could_lose_events() -> None:
    from mlpack_agent.metrics import DroppedBooks

    now = [0.0]
    books = DroppedBooks(per_s=100, burst=1000, clock=lambda: now[0])
    assert books.rise(pid=1, count=10**12) is None  # at start: at most the burst
    assert books.rise(pid=1, count=600) == 600
    assert books.rise(pid=2, count=500) is None  # 1,100 in all would pass the burst
    now[0] = 10.0  # 10 s later: 1,000 more are plausible
    assert books.rise(pid=2, count=500) == 500
    assert books.rise(pid=1, count=650) == 50  # a running count: only its rise counts
    assert books.rise(pid=1, count=3) == 3  # lower: a new process under a reused pid
    assert books.total == 600 + 500 + 50 + 3 <= 1000 + 100 * now[0]


@pytest.mark.parametrize("mode, owner", [(0o755, None), (0o700, NOBODY)])
def test_the_agent_will_not_bind_in_a_folder_others_can_enter(tmp_path: Path, mode: int, owner: int | None) -> None:
    from mlpack_agent.folders import UnsafeFolder
    from mlpack_agent.trust import bind

    folder = tmp_path / "shared"
    folder.mkdir(mode=mode)
    folder.chmod(mode)
    if owner is not None:
        if os.geteuid() != 0:
            pytest.skip("only root can give a folder to another user")
        os.chown(folder, owner, owner)
    with pytest.raises(UnsafeFolder, match="socket's folder"):
        bind(str(folder / "agent.sock"))
    assert not (folder / "agent.sock").exists()


@AS_ROOT
def test_systemds_dynamic_user_link_to_the_runtime_directory_is_followed(tmp_path: Path) -> None:
    """DynamicUser= units reach RuntimeDirectory= through /run/NAME -> private/NAME, a link
    root made in a folder only root writes (tests/test_systemd_units.py boots the real one)."""
    from mlpack_agent.trust import bind

    run = tmp_path / "run"
    (run / "private" / "mlpack-x").mkdir(parents=True, mode=0o700)
    run.chmod(0o755)
    (run / "mlpack-x").symlink_to("private/mlpack-x")
    sock = bind(str(run / "mlpack-x" / "agent.sock"))
    sock.close()
    assert (run / "private" / "mlpack-x" / "agent.sock").is_socket()


@AS_ROOT
@pytest.mark.parametrize("how", ["others can write its folder", "another user owns it"])
def test_any_other_link_as_the_socket_folder_is_refused(tmp_path: Path, how: str) -> None:
    from mlpack_agent.folders import UnsafeFolder
    from mlpack_agent.trust import bind

    (tmp_path / "real").mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "mlpack-x").symlink_to(tmp_path / "real")
    if how == "others can write its folder":
        shared.chmod(0o1777)  # /tmp: anyone may have made the link
    else:
        os.lchown(shared / "mlpack-x", NOBODY, NOBODY)
    with pytest.raises(UnsafeFolder, match="is not a folder \\(a link or a file\\)"):
        bind(str(shared / "mlpack-x" / "agent.sock"))
    assert list((tmp_path / "real").iterdir()) == []


def test_a_socket_path_too_long_for_the_kernel_is_named_before_any_folder_is_made(tmp_path: Path) -> None:
    from mlpack_agent.trust import MAX_SOCKET_PATH, bind

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(OSError, match=f"over the {MAX_SOCKET_PATH} a Unix socket path may have"):
        bind(str(deep / "agent.sock"))
    assert list(tmp_path.iterdir()) == []


def test_an_agent_told_to_use_a_shared_folder_says_why_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"socket": "/tmp/mlpack-agent.sock", "prometheus": {"enabled": False}}))
    result = subprocess.run([sys.executable, "-m", "mlpack_agent.main", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "other users can enter the socket's folder /tmp (mode 1777)" in result.stderr
    assert "mode 0700" in result.stderr


def test_prometheus_settings_that_mean_nothing_alone_are_refused(tmp_path: Path) -> None:
    from mlpack_agent.config import ConfigError, load_config

    assert load_config(None, env={}).prometheus.host == "127.0.0.1"
    for env, field in [({"MLPACK_AGENT_PROMETHEUS_CERT_FILE": "c.pem"}, "key_file"),
                       ({"MLPACK_AGENT_PROMETHEUS_USERNAME": "prometheus"}, "password_file"),
                       ({"MLPACK_AGENT_PROMETHEUS_CLIENT_CA_FILE": "ca.pem"}, "cert_file")]:
        with pytest.raises(ConfigError, match=field):
            load_config(None, env=env)
    config = load_config(None, env={"MLPACK_AGENT_SAME_PID_NAMESPACE": "1"})
    assert config.peers.same_pid_namespace is True
