"""Keys, certificates and small signed artifacts for the signature tests, made locally."""

from __future__ import annotations

import datetime
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlpack.artifact import Artifact
from mlpack.model.info import sha256_file

from .manifests import make_manifest, write_artifact
from .models import linear_model


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def make_keys(folder: Path, name: str = "signer") -> KeyPair:
    """An elliptic-curve (P-256) key pair as PEM files, as `openssl ecparam -genkey` makes."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private, public)


@dataclass(frozen=True)
class CertificateChain:
    key: Path  # the signing certificate's private key
    certificate: Path  # the signing certificate
    ca: Path  # the root that verifiers trust


def make_certificates(folder: Path) -> CertificateChain:
    """A root CA and a code-signing certificate it issued (elliptic-curve keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=30)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlpack test root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlpack test signer")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = CertificateChain(folder / "signer.key.pem", folder / "signer.cert.pem", folder / "ca.cert.pem")
    chain.key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    chain.certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    chain.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return chain


def small_artifact(root: Path, target: str = "x86-cpu") -> Artifact:
    """An artifact folder without building: a real model and a few files, recorded in its manifest."""
    shipped = root / "model" / "model.onnx"
    shipped.parent.mkdir(parents=True)
    linear_model(shipped)
    (root / "report.md").write_text("# report\n")
    (root / "agent").mkdir()
    (root / "agent" / "agent.json").write_text('{"prometheus": {"port": 9464}}\n')
    return write_artifact(root, make_manifest(target, model_sha256=sha256_file(shipped),
                                              size_bytes=shipped.stat().st_size))


def flip_one_byte(path: Path, offset: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def model_signing_cli(*args: str) -> subprocess.CompletedProcess:
    """The PyPI `model_signing` command, as a user runs it (a separate process, none of mlpack)."""
    exe = Path(sys.executable).with_name("model_signing")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "model_signing"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
