"""aws-lambda-arm64 (Graviton) is one target file: it builds end to end, its zip holds only
aarch64 binaries, its IaC asks for arm64, and its cold start is measured on the target's
architecture or said not to be."""

from __future__ import annotations

import struct
import zipfile

import pytest

from mlpack.awslambda.measure import find_python
from mlpack.targets import target_files

from .lambda_support import requires_python312
from .pyramid import heavy

pytestmark = pytest.mark.slow

ELF_MACHINES = {62: "x86_64", 183: "aarch64"}  # e_machine: EM_X86_64, EM_AARCH64


@pytest.fixture(scope="module")
@heavy
def arm64_artifact(demo_artifact):
    return demo_artifact("aws-lambda-arm64")


def elf_machine(header: bytes) -> str | None:
    """The architecture an ELF file is built for; None for a file that is not ELF."""
    if header[:4] != b"\x7fELF":
        return None
    endian = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(endian + "H", header[18:20])
    return ELF_MACHINES.get(machine, str(machine))


def test_adding_the_target_was_adding_its_file() -> None:
    assert target_files()["aws-lambda-arm64"].name == "aws-lambda-arm64.toml"


def test_its_zip_holds_only_aarch64_binaries(arm64_artifact) -> None:
    with zipfile.ZipFile(arm64_artifact.path / arm64_artifact.manifest.lambda_.zip) as zf:
        machines = {name: elf_machine(zf.open(name).read(64)) for name in zf.namelist()}
    binaries = {name: machine for name, machine in machines.items() if machine}
    assert any(name.startswith("onnxruntime/capi/onnxruntime_pybind11_state") for name in binaries)
    assert any(name.startswith("numpy/_core/_multiarray_umath") for name in binaries)
    assert all(name.endswith(".so") or ".so." in name for name in binaries)
    assert set(binaries.values()) == {"aarch64"}, {n: m for n, m in binaries.items() if m != "aarch64"}


def test_its_function_runs_on_arm64_from_the_same_handler(arm64_artifact, demo_artifact) -> None:
    iac = arm64_artifact.path / "iac"
    assert 'Architectures: ["arm64"]' in (iac / "sam" / "template.yaml").read_text()
    assert 'architectures = ["arm64"]' in (iac / "terraform-lambda" / "main.tf").read_text()
    assert "--platform=linux/arm64" in (arm64_artifact.path / "container" / "Dockerfile").read_text()
    x86 = demo_artifact("aws-lambda").path / "lambda" / "app" / "handler.py"
    assert (arm64_artifact.path / "lambda" / "app" / "handler.py").read_text() == x86.read_text().replace(
        "digits-demo-aws-lambda", "digits-demo-aws-lambda-arm64")


def test_its_cold_start_is_measured_on_aarch64_or_said_not_to_be(arm64_artifact) -> None:
    cold = arm64_artifact.cold_start
    if find_python("3.12", "aarch64") is None:
        assert cold.seconds is None
        assert cold.note.startswith("not measured: no Python 3.12 for aarch64 on this machine")
    else:  # an aarch64 interpreter (MLPACK_LAMBDA_PYTHON), on this CPU or under qemu
        assert cold.seconds > 0 and cold.runs > 0
        assert cold.emulated is (find_python("3.12", "aarch64").emulated)


@requires_python312
def test_its_bytecode_is_compiled_on_this_machine_whatever_its_cpu(arm64_artifact) -> None:
    # Bytecode depends on the Python version only: the x86_64 python3.12 compiles it.
    assert arm64_artifact.manifest.lambda_.bytecode == "cpython-312, unchecked-hash"
