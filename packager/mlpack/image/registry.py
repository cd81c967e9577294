"""Talking to an OCI registry (distribution API v2): references, credentials, manifests.

Used to read back what a push left in the registry (its digest and config), and to
write the multi-arch index. Credentials come from the docker config (`~/.docker/config.json`,
`DOCKER_CONFIG`), including `credHelpers` and `credsStore`, through the docker SDK's
resolver. Transient server errors (500, 502, 503, 504) and dropped connections are retried
with exponential backoff.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import InputError, MlpackError

# From the distribution reference grammar (github.com/distribution/reference).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?P<registry>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    rf"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?$"
)

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
RETRY_STATUS = (500, 502, 503, 504)


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str, default_tag: str) -> "Reference":
        match = _REFERENCE.match(text.strip())
        host = match.group("registry") if match else ""
        # Like docker: the first part is a registry only with a dot, a port, or "localhost".
        if not match or not ("." in host or ":" in host or host == "localhost"):
            raise InputError(
                f"invalid --to {text!r}: expected REGISTRY/REPOSITORY[:TAG]",
                "name the registry host, e.g. --to registry.example.com/team/model:1.0 or --to 127.0.0.1:5000/model",
            )
        return cls(host, match.group("repository"), match.group("tag") or default_tag)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.registry, self.repository, tag)

    def at(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    @property
    def insecure(self) -> bool:
        """Plain HTTP for loopback registries, as docker does for 127.0.0.0/8."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else self.registry[1:].split("]")[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for a registry from the docker config and its credential helpers."""
    import docker.auth

    config = docker.auth.load_config()
    # Entries from "auths" come back with lower-case keys, those from credential helpers capitalised.
    found = {key.lower(): value for key, value in (config.resolve_authconfig(registry) or {}).items()}
    if found.get("username") and found.get("password"):
        return found["username"], found["password"]
    if found.get("identitytoken"):
        return "<token>", found["identitytoken"]
    return None


def authfile_json(registry: str) -> str | None:
    """The same credentials as a containers-auth.json document for buildah/skopeo."""
    creds = credentials(registry)
    if creds is None:
        return None
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}})


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


class RegistryClient:
    def __init__(self, ref: Reference, retries: int = 4, backoff: float = 0.5, timeout: float = 30) -> None:
        self.ref = ref
        self.base = f"{'http' if ref.insecure else 'https'}://{ref.registry}/v2"
        self.timeout = timeout
        self.session = requests.Session()
        retry = Retry(
            total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
            status_forcelist=RETRY_STATUS, allowed_methods=None, raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._auth_header: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base}/{self.ref.repository}/{path}"
        headers = dict(kwargs.pop("headers", {}))
        try:
            for _ in range(2):
                if self._auth_header:
                    headers["Authorization"] = self._auth_header
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
                if response.status_code != 401 or self._auth_header:
                    return response
                self._auth_header = self._authenticate(response.headers.get("WWW-Authenticate", ""))
            return response
        except requests.RequestException as exc:
            raise MlpackError(f"registry {self.ref.registry} is not reachable: {_short(exc)}",
                              "check the address and that the registry is running") from exc

    def _authenticate(self, challenge: str) -> str:
        creds = credentials(self.ref.registry)
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if creds is None:
                raise self._denied()
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            query = {"service": fields.get("service", ""), "scope": f"repository:{self.ref.repository}:pull,push"}
            response = self.session.get(fields.get("realm", ""), params=query, auth=creds, timeout=self.timeout)
            if response.status_code != 200:
                raise self._denied()
            body = response.json()
            return f"Bearer {body.get('token') or body.get('access_token')}"
        raise self._denied()

    def _denied(self) -> MlpackError:
        return MlpackError(f"registry {self.ref.registry} refused the credentials",
                           f"log in first (docker login {self.ref.registry}) or check the credential helper")

    def get_manifest(self, reference: str) -> tuple[str, str, bytes]:
        """(digest computed from the bytes, media type, bytes) of a manifest by tag or digest."""
        response = self._request("GET", f"manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code != 200:
            raise MlpackError(f"registry {self.ref.registry} has no manifest {self.ref.name}:{reference} "
                              f"(HTTP {response.status_code})")
        body = response.content
        digest = digest_of(body)
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise MlpackError(f"registry {self.ref.registry} sent a manifest whose bytes hash to {digest}, "
                              f"not to the {header} it announced")
        return digest, response.headers.get("Content-Type", "").split(";")[0], body

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str:
        return self.put_manifest_response(tag, body, media_type)[0]

    def put_manifest_response(self, reference: str, body: bytes, media_type: str,
                              what: str = "the index") -> tuple[str, dict[str, str]]:
        """PUT a manifest by tag or digest: (its digest, the response headers)."""
        response = self._request("PUT", f"manifests/{reference}", data=body, headers={"Content-Type": media_type})
        if response.status_code not in (200, 201):
            detail = _registry_error(response)
            raise MlpackError(f"registry {self.ref.registry} refused {what} {self.ref.name}:{reference}: {detail}",
                              "check that the registry accepts pushes (and OCI image indexes)")
        return response.headers.get("Docker-Content-Digest") or digest_of(body), dict(response.headers)

    def put_blob(self, body: bytes) -> str:
        """Upload a blob in one request (POST an upload, PUT its bytes); returns its digest."""
        digest = digest_of(body)
        if self._request("HEAD", f"blobs/{digest}").status_code == 200:
            return digest
        started = self._request("POST", "blobs/uploads/")
        location = started.headers.get("Location", "")
        if started.status_code != 202 or not location:
            raise MlpackError(f"registry {self.ref.registry} refused a blob upload to {self.ref.name}: "
                              f"{_registry_error(started)}", "check that the registry accepts pushes")
        url = location if location.startswith("http") else f"{self.base.rsplit('/v2', 1)[0]}{location}"
        response = self.session.put(url, params={"digest": digest}, data=body, timeout=self.timeout,
                                    headers={"Content-Type": "application/octet-stream",
                                             **({"Authorization": self._auth_header} if self._auth_header else {})})
        if response.status_code != 201:
            raise MlpackError(f"registry {self.ref.registry} refused the blob {digest[:19]}: "
                              f"{_registry_error(response)}", "check that the registry accepts pushes")
        return digest


def image_index(entries: list[tuple[str, int, str, str]]) -> bytes:
    """An OCI image index over (digest, size, media type, platform "os/arch") entries."""
    manifests = []
    for digest, size, media_type, platform in entries:
        os_name, arch = platform.split("/", 1)
        manifests.append({"mediaType": media_type, "digest": digest, "size": size,
                          "platform": {"architecture": arch, "os": os_name}})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(index, indent=2).encode()


def _registry_error(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        if errors:
            return f"HTTP {response.status_code} {errors[0].get('code', '')}: {errors[0].get('message', '')}".strip()
    except ValueError:
        pass
    return f"HTTP {response.status_code}"


def _short(exc: BaseException) -> str:
    text = str(exc)
    reason = re.search(r"(Connection refused|Name or service not known|timed out|Max retries exceeded)", text)
    return reason.group(1) if reason else text.splitlines()[0][:160]
