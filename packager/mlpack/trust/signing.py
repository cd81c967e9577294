"""Signatures over an artifact folder, in the OpenSSF model-signing format.

`mlpack sign` writes ARTIFACT/signature.sig with the `model-signing` library (a Sigstore
bundle holding a DSSE envelope over an in-toto statement that lists every file's
sha256), signed with an elliptic-curve private key, optionally with its certificate
chain; no network, no Sigstore service. The signature covers every file of the
artifact, manifest.json included (deploy, push, rollout and serve act on what it says),
except two, recorded as ignored paths inside the signed statement (so the PyPI
`model_signing verify key` command checks an artifact on its own, without options):

- `signature.sig` itself;
- `history.json`: where the artifact was deployed and rolled out, records that no
  command reads to act, so that deploys and rollouts keep the signature valid.

Commands that change a signed file afterwards (`mlpack image`, `push`, `iac`) remove the
signature and say that the artifact must be signed again (`Artifact.update`). A
signature whose statement leaves out more than those two files (one made by an mlpack
that did not sign manifest.json) is refused: it would let the manifest change unseen.

Keys are read from a file or from an environment variable holding a path or the PEM
text itself; they are never printed, and key text from the environment only reaches
the library as a private temporary file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from ..artifact import Artifact
from ..errors import InputError, MlpackError
from ..fsutil import scratch_folder
from ..manifest import HISTORY, SIGNATURE

UNSIGNED = (SIGNATURE, HISTORY)  # everything else is signed, manifest.json included
SIGNING_KEY_ENV = "MLPACK_SIGNING_KEY"  # the private key: a path, or the PEM text
SIGNING_PASSWORD_ENV = "MLPACK_SIGNING_KEY_PASSWORD"  # for an encrypted private key
VERIFY_KEY_ENV = "MLPACK_VERIFY_KEY"  # the public key or CA certificate: a path, or the PEM text
KEY_HINT = f"pass --key PUBLIC.pem (or set {VERIFY_KEY_ENV})"


@dataclass(frozen=True)
class Key:
    """Key material from a file or an environment variable; `origin` names it without its content."""

    origin: str
    path: Path | None = None
    pem: bytes | None = None

    def read(self) -> bytes:
        if self.pem is not None:
            return self.pem
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the key {self.origin}: {exc.strerror or exc}",
                             "pass the path of a PEM file") from None

    @property
    def kind(self) -> Literal["private", "public", "certificate"]:
        text = self.read()
        if b"-----BEGIN CERTIFICATE-----" in text:
            return "certificate"
        if b"PRIVATE KEY-----" in text:
            return "private"
        if b"-----BEGIN PUBLIC KEY-----" in text:
            return "public"
        raise InputError(f"the key {self.origin} is not a PEM private key, public key or certificate",
                         "pass an elliptic-curve key in PEM form (openssl ecparam -genkey -name prime256v1)")

    @contextlib.contextmanager
    def as_file(self) -> Iterator[Path]:
        """A path to the key for the library: the file itself, or a private temporary copy of env text
        (in a 0700 scratch folder, which the next build removes if this process is killed)."""
        if self.path is not None:
            yield self.path
            return
        with scratch_folder("key") as scratch:
            path = scratch.path / "key.pem"
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                fh.write(self.read())
            yield path

    @property
    def fingerprint(self) -> str:
        """Names a key in messages without showing it: sha256 of the public key's PEM (what the
        signature bundle records as its key hint), or of a certificate's DER form."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        text = self.read()
        try:
            if self.kind == "certificate":
                digest = hashlib.sha256(x509.load_pem_x509_certificate(text).public_bytes(
                    serialization.Encoding.DER)).hexdigest()
            else:
                public = (serialization.load_pem_private_key(text, _password()).public_key()
                          if self.kind == "private" else serialization.load_pem_public_key(text))
                digest = hashlib.sha256(public.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
        except (ValueError, TypeError):
            raise InputError(f"the key {self.origin} cannot be read as PEM", "pass an elliptic-curve key in "
                             f"PEM form; an encrypted private key needs {SIGNING_PASSWORD_ENV}") from None
        return f"sha256:{digest[:16]}"


    def require_elliptic(self) -> None:
        """model-signing's key mode takes elliptic-curve keys only (P-256, P-384, P-521)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        text = self.read()
        try:
            loaded = (serialization.load_pem_private_key(text, _password()) if self.kind == "private"
                      else serialization.load_pem_public_key(text))
        except (ValueError, TypeError):
            raise InputError(f"the key {self.origin} cannot be read as PEM", "an encrypted private key needs "
                             f"{SIGNING_PASSWORD_ENV}") from None
        if not isinstance(loaded, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
            raise InputError(f"the key {self.origin} is not an elliptic-curve key ({type(loaded).__name__})",
                             "make one: openssl ecparam -genkey -name prime256v1 -noout -out key.pem")


def _password() -> bytes | None:
    value = os.environ.get(SIGNING_PASSWORD_ENV)
    return value.encode() if value else None


def key_from(option: Path | None, env: str) -> Key | None:
    """The key given by an option, else by the environment variable `env` (a path or PEM text)."""
    if option is not None:
        path = Path(option).expanduser()
        if not path.is_file():
            raise InputError(f"key file {path} does not exist", "pass the path of a PEM file")
        return Key(origin=str(path), path=path)
    value = os.environ.get(env, "").strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        return Key(origin=f"from ${env}", pem=value.encode() + b"\n")
    path = Path(value).expanduser()
    if not path.is_file():
        # Never echo the value: it may be key material pasted wrongly.
        raise InputError(f"${env} is neither PEM text nor the path of an existing file",
                         f"set {env} to a key file's path or to the PEM text itself")
    return Key(origin=f"{path} (from ${env})", path=path)


def _hashing_config():  # noqa: ANN202 - model_signing's own type
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=list(UNSIGNED), ignore_git_paths=False)


def sign_artifact(artifact: Artifact, key: Key, certificate: Path | None = None,
                  chain: list[Path] | None = None) -> Path:
    """Sign an intact artifact folder; writes and returns ARTIFACT/signature.sig."""
    from model_signing import signing

    artifact.require_intact("signed")
    if key.kind != "private":
        raise InputError(f"the key {key.origin} is not a private key", "mlpack sign needs the private key; "
                         "verify takes the public one")
    key.require_elliptic()
    password = os.environ.get(SIGNING_PASSWORD_ENV)
    destination = artifact.path(SIGNATURE)
    config = signing.Config().set_hashing_config(_hashing_config())
    with key.as_file() as key_path, scratch_folder("sign") as scratch:
        try:
            if certificate is not None:
                config.use_certificate_signer(private_key=key_path, signing_certificate=certificate,
                                              certificate_chain=chain or [])
            else:
                config.use_elliptic_key_signer(private_key=key_path, password=password)
            # Written beside, then renamed: a failed signing leaves no half-written signature.
            staged = scratch.path / SIGNATURE
            config.sign(artifact.root, staged)
        except (ValueError, TypeError, AttributeError) as exc:  # AttributeError: a key without a curve (RSA)
            raise InputError(f"cannot sign with the key {key.origin}: {_reason(exc)}",
                             "use an elliptic-curve key (P-256, P-384 or P-521) in PEM form; "
                             f"an encrypted one needs {SIGNING_PASSWORD_ENV}") from None
        tmp_dest = destination.with_name(f".{SIGNATURE}.tmp")
        tmp_dest.write_bytes(staged.read_bytes())
        os.replace(tmp_dest, destination)
    return destination


@dataclass(frozen=True)
class SignatureCheck:
    signed: bool
    verified: bool
    key: str | None  # the key's origin and fingerprint, when one checked it

    def describe(self) -> str:
        if self.verified:
            return f"signature verified with {self.key}"
        return "signed, signature not checked (no key given)" if self.signed else "not signed"


def verify_signature(artifact: Artifact, key: Key) -> None:
    """Check ARTIFACT/signature.sig against the folder with a public key or CA certificate,
    and that the signed statement leaves out nothing but UNSIGNED."""
    from model_signing import verifying

    kind = require_verifying_key(key)
    if kind == "public":
        key.require_elliptic()
    config = verifying.Config().set_hashing_config(_hashing_config())
    # One copy of the signature is both verified and read, so it cannot change in between.
    with key.as_file() as key_path, scratch_folder("verify") as scratch:
        signature = scratch.path / SIGNATURE
        shutil.copyfile(artifact.path(SIGNATURE), signature)
        try:
            if kind == "certificate":
                config.use_certificate_verifier(certificate_chain=[key_path])
            else:
                config.use_elliptic_key_verifier(public_key=key_path)
            config.verify(artifact.root, signature)
        except Exception as exc:  # the library raises ValueError, cryptography's and protobuf's errors
            raise MlpackError(
                f"{artifact.name}: the signature does not verify with the key {key.origin} "
                f"({key.fingerprint}): {_reason(exc)}",
                "the artifact changed after signing, or was signed with another key: rebuild and sign it again",
            ) from None
        left_out = sorted(set(signed_statement(signature).get("ignore_paths", [])) - set(UNSIGNED))
        if left_out:
            raise MlpackError(f"{artifact.name}: the signature verifies but leaves {', '.join(left_out)} unsigned "
                              "(made by an mlpack that did not sign the manifest), so those files could change "
                              "unseen", f"sign it again: mlpack sign {artifact.root} --key PRIVATE.pem")


def signed_statement(signature: Path) -> dict:
    """The serialization settings of a verified signature's in-toto statement (a DSSE payload
    in the Sigstore bundle): its hash type and the paths it ignores."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        return dict(statement["predicate"]["serialization"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MlpackError(f"{signature.name} holds no model-signing statement ({type(exc).__name__}: {exc})",
                          "sign the artifact again with `mlpack sign`") from None


def require_verifying_key(key: Key) -> str:
    """A public key or a CA certificate; a private key is refused (it belongs where signing happens)."""
    kind = key.kind
    if kind == "private":
        raise InputError(f"the key {key.origin} is a private key", "verify with the public key; keep the "
                         "private one where signing happens")
    return kind


def verify_artifact(artifact: Artifact, action: str, key: Key | None) -> SignatureCheck:
    """Everything a command checks before it ships an artifact.

    The files must match manifest.json. With a key, the artifact must be signed and the
    signature must verify over every file, manifest.json included; the manifest's model
    hash must then be the signed model file's. Without a key a signature is left
    unchecked (and said so).
    """
    if key is not None:
        require_verifying_key(key)
    artifact.require_intact(action)
    signed = artifact.path(SIGNATURE).is_file()
    if key is None:
        return SignatureCheck(signed=signed, verified=False, key=None)
    if not signed:
        raise MlpackError(f"{artifact.name} is not signed, and a key was given: an unsigned artifact is never "
                         f"{action} when a key is given or configured",
                         f"sign it first: mlpack sign {artifact.root} --key PRIVATE.pem")
    verify_signature(artifact, key)
    # The signed manifest must agree with itself: its model is the model file it lists.
    model = artifact.manifest.model
    recorded = artifact.manifest.files.get(model.file)
    if recorded is None or recorded.sha256 != model.sha256:
        raise MlpackError(f"{artifact.name}: manifest.json names model sha256 {model.sha256[:12]}, but the signed "
                          f"{model.file} is {recorded.sha256[:12] if recorded else 'not listed'}; "
                          f"a changed artifact is never {action}", "rebuild it with `mlpack build`")
    return SignatureCheck(signed=True, verified=True, key=f"{key.origin} ({key.fingerprint})")


def trust_artifact(artifact: Artifact, action: str, key: Path | None = None) -> SignatureCheck:
    """`verify_artifact` with the key a command was given (`--key`), else the configured one
    ($MLPACK_VERIFY_KEY): what deploy, rollout and push call before they ship anything."""
    return verify_artifact(artifact, action, key_from(key, VERIFY_KEY_ENV))


def _reason(exc: BaseException) -> str:
    """The library's reason in a line; its file-by-file mismatch report, by file name."""
    import re

    text = " ".join(str(exc).split()) or type(exc).__name__
    if text.startswith("Signature mismatch"):
        text = text.replace("\\", "")  # the library's list of messages, as repr() escaped it
        changed = re.findall(r"Hash mismatch for '([^']+)'", text)
        added = re.findall(r"Extra files found in model '[^']*': ([^\]\"]+)", text)
        removed = re.findall(r"Missing files in model '[^']*': ([^\]\"]+)", text)
        parts = ([f"changed since signing: {', '.join(changed)}"] if changed else []) + \
                [f"added since signing: {a.strip(chr(39) + ' ')}" for a in added] + \
                [f"missing since signing: {r.strip(chr(39) + ' ')}" for r in removed]
        if parts:
            return "; ".join(parts)[:300]
    return text[:300]
