"""`mlpack push` without building images: references, credentials, retries, read-back.

The registry tests run Debian's docker-registry on 127.0.0.1; a small proxy in front of it
answers 503 to the first requests, as a registry behind a busy load balancer does.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from mlpack.cli import app
from mlpack.errors import InputError, MlpackError
from mlpack.image.builder import PushedImage, PushFailed, classify_push_error
from mlpack.image.push import _push_with_retries
from mlpack.image.registry import Reference, RegistryClient, credentials, digest_of, image_index
from mlpack.progress import Progress
from typer.testing import CliRunner

from .image_support import Flaky503Proxy, registry, requires_image_tools


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:5000/digits", ("127.0.0.1:5000", "digits", "v0")),
    ("registry.example.com/team/digits:1.2-rc.1", ("registry.example.com", "team/digits", "1.2-rc.1")),
    ("localhost/a/b/c:latest", ("localhost", "a/b/c", "latest")),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/digits:x86", (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "mlpack/digits", "x86")),
])
def test_references_name_a_registry_a_repository_and_a_tag(text: str, expected: tuple) -> None:
    ref = Reference.parse(text, default_tag="v0")
    assert (ref.registry, ref.repository, ref.tag) == expected


@pytest.mark.parametrize("text", [
    "digits",  # no registry: never guess Docker Hub
    "team/digits:1",  # "team" is not a registry host
    "127.0.0.1:5000/Digits",  # upper case repository
    "127.0.0.1:5000/digits:",  # empty tag
    "127.0.0.1:5000/digits:-bad",  # tag must start with a word character
    "127.0.0.1:5000/digits@sha256:abc",  # push to a tag, not a digest
    "127.0.0.1:5000/digits:" + "x" * 129,  # tags are at most 128 characters
])
def test_wrong_reference_syntax_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="expected REGISTRY/REPOSITORY"):
        Reference.parse(text, default_tag="v0")


def test_wrong_reference_is_one_line_before_anything_else(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["push", str(tmp_path), "--to", "digits:1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid --to 'digits:1': expected REGISTRY/REPOSITORY[:TAG]; ")
    assert result.stderr.count("\n") == 1


def test_loopback_registries_use_plain_http_others_tls() -> None:
    assert Reference.parse("127.0.0.1:5000/a", "t").insecure
    assert Reference.parse("localhost:5000/a", "t").insecure
    assert not Reference.parse("registry.example.com/a", "t").insecure


def test_credentials_come_from_the_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = base64.b64encode(b"robot:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert credentials("registry.example.com") == ("robot", "s3cret")
    assert credentials("other.example.com") is None


def test_credential_helpers_are_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread host\n'
                      'echo "{\\"Username\\": \\"helper-user\\", \\"Secret\\": \\"from-$host\\"}"\n')
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"registry.example.com": "fake"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{helper.parent}:{__import__('os').environ['PATH']}")
    assert credentials("registry.example.com") == ("helper-user", "from-registry.example.com")


def test_push_errors_are_classified() -> None:
    flaky = classify_push_error("r.example.com/a:1",
                                "Error: writing blob: received unexpected HTTP status: 503 Service Unavailable")
    assert flaky.transient and flaky.one_line().startswith("push to r.example.com/a:1 failed: writing blob")
    auth = classify_push_error("r.example.com/a:1", "Error: ... 401 Unauthorized")
    assert not auth.transient and "docker login r.example.com" in auth.one_line()
    refused = classify_push_error("r.example.com/a:1", "Error: dial tcp 10.0.0.1:443: connect: connection refused")
    assert not refused.transient


class FlakyBuilder:
    """A builder whose push fails the way a busy registry does, `failures` times."""

    name = "flaky"

    def __init__(self, failures: list[PushFailed]) -> None:
        self.failures = failures
        self.calls = 0

    def push(self, ref, dest, insecure, log, authfile=None) -> PushedImage:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return PushedImage(dest, "sha256:" + "0" * 64)


def test_transient_push_failures_are_retried_with_backoff() -> None:
    builder = FlakyBuilder([classify_push_error("r/a:1", "503 Service Unavailable")] * 2)
    slept: list[float] = []
    pushed = _push_with_retries(builder, "a:1", "r/a:1", False, Progress(quiet=True), None, slept.append)
    assert pushed.digest.startswith("sha256:") and builder.calls == 3
    assert slept == [1.0, 2.0]


def test_permanent_push_failures_are_not_retried() -> None:
    builder = FlakyBuilder([classify_push_error("r/a:1", "401 Unauthorized")])
    with pytest.raises(PushFailed, match="refused the credentials"):
        _push_with_retries(builder, "a:1", "r/a:1", False, Progress(quiet=True), None, lambda _: None)
    assert builder.calls == 1


def test_transient_failures_give_up_after_four_attempts() -> None:
    builder = FlakyBuilder([classify_push_error("r/a:1", "502 Bad Gateway")] * 9)
    with pytest.raises(PushFailed, match="502 Bad Gateway"):
        _push_with_retries(builder, "a:1", "r/a:1", False, Progress(quiet=True), None, lambda _: None)
    assert builder.calls == 4


@requires_image_tools
def test_the_registry_client_retries_503_and_checks_what_it_reads(tmp_path: Path) -> None:
    with registry(tmp_path / "registry") as upstream:
        proxy = Flaky503Proxy(upstream, failures=2)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            client = RegistryClient(Reference.parse(f"{proxy.host}/demo/index", "v1"), backoff=0.05)
            # An index over an image that is not there is refused by the registry: a clear error.
            body = image_index([("sha256:" + "1" * 64, 100, "application/vnd.oci.image.manifest.v1+json",
                                 "linux/amd64")])
            with pytest.raises(MlpackError, match=r"refused the index .*HTTP 400 MANIFEST_BLOB_UNKNOWN"):
                client.put_manifest("v1", body, "application/vnd.oci.image.index.v1+json")
            assert proxy.seen >= 3, "the two 503 answers were retried"
            with pytest.raises(MlpackError, match="has no manifest"):
                client.get_manifest("v1")
        finally:
            proxy.shutdown()
    assert digest_of(b"{}") == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
