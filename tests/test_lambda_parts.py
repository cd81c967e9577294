"""The parts of the Lambda package, each on its own and fast: pruning (in Python and as
the image's shell commands), reproducible zips and bytecode, the cold-start statistics,
memory sizing, the interpreter search and what a build without one says."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from mlpack.build.plan import MEMORY_HEADROOM, MIN_MEMORY_MB, memory_mb
from mlpack.build.request import check_snapstart
from mlpack.awslambda.bytecode import compile_folder
from mlpack.errors import InputError, MlpackError
from mlpack.awslambda.measure import find_python, p90, top_imports
from mlpack.awslambda.prune import prune, prune_rules, shell_commands
from mlpack.manifest import ColdStart
from mlpack.awslambda import zip_step as lambda_zip
from mlpack.awslambda.zip_step import enforce_cold_start, write_zip
from mlpack.targets import load_target

from .lambda_support import requires_python312

SITE = {
    "numpy/__init__.py": "x = 1\n",
    "numpy/__init__.pyi": "x: int\n",
    "numpy/py.typed": "",
    "numpy/_core/include/numpy/ndarraytypes.h": "/* header */\n",
    "numpy/_core/tests/test_core.py": "def test(): pass\n",
    "numpy/testing/__init__.py": "",
    "numpy/lib/__init__.py": "y = 2\n",  # a package named lib is kept: only numpy/_core/lib goes
    "numpy/_core/lib/libnpymath.a": "!<arch>\n",
    "onnxruntime/__init__.py": "",
    "onnxruntime/LICENSE": "MIT\n",
    "onnxruntime/tools/convert.py": "",
    "onnxruntime/capi/libonnxruntime.so.1.32.0": "\x7fELF",
    "onnxruntime/capi/onnxruntime_pybind11_state.so": "\x7fELF",
    "google/protobuf/__init__.py": "",
    "protobuf-7.0.dist-info/METADATA": "Name: protobuf\n",
    "bin/f2py": "#!/bin/sh\n",
}
KEPT = {"numpy/__init__.py", "numpy/lib/__init__.py", "onnxruntime/__init__.py", "onnxruntime/LICENSE",
        "onnxruntime/capi/onnxruntime_pybind11_state.so"}


def make_site(root: Path) -> Path:
    for relative, text in SITE.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_pruning_keeps_what_the_handler_imports_and_records_what_it_removed(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    pruned = prune(site, prune_rules(load_target("aws-lambda")))
    assert files(site) == KEPT
    by_kind = {p.kind: p.files for p in pruned}
    assert by_kind == {"tests": 2, "type stubs": 2, "headers and static libraries": 2, "tools": 2,
                       "dependencies of onnxruntime's tools": 2, "onnxruntime's C API": 1}
    assert not (site / "google").exists()  # emptied folders go too


def test_the_image_prunes_with_the_same_rules_as_shell_commands(tmp_path: Path) -> None:
    rules = prune_rules(load_target("aws-lambda"))
    site = make_site(tmp_path / "site")
    script = "set -eu; site=$1; " + "; ".join(shell_commands(rules, '"$site"'))
    subprocess.run(["sh", "-c", script, "sh", str(site)], check=True)
    assert files(site) == KEPT


def test_only_the_cpu_package_loses_its_c_api() -> None:
    kinds = lambda target: {r.kind for r in prune_rules(load_target(target))}  # noqa: E731
    assert "onnxruntime's C API" in kinds("aws-lambda") and "onnxruntime's C API" not in kinds("cuda-gpu")


def test_a_zip_of_the_same_files_has_the_same_bytes_whatever_their_times_and_order(tmp_path: Path) -> None:
    def zipped(name: str, order: list[str], mtime: int) -> bytes:
        folder = tmp_path / name
        for relative in order:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(relative)
            os.utime(folder / relative, (mtime, mtime))
            (folder / relative).chmod(0o755 if relative.endswith(".so") else 0o600)
        write_zip(tmp_path / f"{name}.zip", folder)
        return (tmp_path / f"{name}.zip").read_bytes()

    first = zipped("a", ["handler.py", "pkg/x.so", "pkg/__init__.py"], 1_000_000_000)
    again = zipped("b", ["pkg/__init__.py", "handler.py", "pkg/x.so"], 1_700_000_000)
    assert first == again
    info = zipfile.ZipFile(tmp_path / "a.zip").infolist()
    assert [i.filename for i in info] == ["handler.py", "pkg/__init__.py", "pkg/x.so"]
    assert {i.date_time for i in info} == {(1980, 1, 1, 0, 0, 0)} and {i.external_attr >> 16 for i in info} == {0o644}


@requires_python312
def test_bytecode_is_hash_based_unchecked_and_names_the_run_time_path(tmp_path: Path) -> None:
    python = find_python("3.12").path
    outputs = []
    for name in ("one", "two"):
        folder = tmp_path / name / "task"
        (folder / "pkg").mkdir(parents=True)
        (folder / "pkg" / "__init__.py").write_text("VALUE = 42\n")
        os.utime(folder / "pkg" / "__init__.py", (1e9 if name == "one" else 2e9,) * 2)
        compiled = compile_folder(folder, python, "/var/task")
        assert compiled.tag == "cpython-312" and compiled.files == 1
        outputs.append((folder / "pkg" / "__pycache__" / "__init__.cpython-312.pyc").read_bytes())
    assert outputs[0] == outputs[1]  # other folder, other mtime: same bytes
    flags = int.from_bytes(outputs[0][4:8], "little")
    assert flags == 0b01  # hash-based, source never checked (PEP 552)
    assert b"/var/task/pkg/__init__.py" in outputs[0] and str(tmp_path).encode() not in outputs[0]


def test_p90_is_the_nearest_rank_and_imports_rank_packages_by_their_own_time() -> None:
    assert p90([0.3, 0.1, 0.2]) == 0.3 and p90([float(i) for i in range(1, 11)]) == 9.0
    log = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:      3000 |       3000 |   numpy._core._multiarray_umath",
        "import time:      1000 |       9000 | numpy",
        "import time:      2500 |       2500 |     onnxruntime.capi._pybind_state",
        "import time:       100 |       2600 |   onnxruntime",
        "import time:       200 |        200 | json",
    ])
    ranked = [(c.package, c.seconds, c.modules) for c in top_imports(log, count=2)]
    assert ranked == [("numpy", 0.004, 2), ("onnxruntime", 0.0026, 2)]


def test_memory_is_the_measured_peak_with_headroom_and_a_floor() -> None:
    assert memory_mb(model_bytes=10 * 2**20, peak_rss_mb=600) == 960  # 900 MB, in 64 MB steps
    assert memory_mb(model_bytes=10 * 2**20, peak_rss_mb=62) == MIN_MEMORY_MB
    # A measured peak wins over the estimate from the model's size, either way.
    assert memory_mb(model_bytes=400 * 2**20, peak_rss_mb=500) == 768
    assert memory_mb(model_bytes=400 * 2**20) == 1472  # unmeasured: 3 x model + 256 MB
    assert MEMORY_HEADROOM == 1.5


def fake_python(folder: Path, version: str, machine: str) -> str:
    exe = folder / f"python-{machine}"
    exe.write_text(f"#!/bin/sh\necho {version} {machine}\n")
    exe.chmod(0o755)
    return str(exe)


def test_the_measuring_interpreter_must_have_the_targets_architecture(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLPACK_LAMBDA_PYTHON", os.pathsep.join(
        [fake_python(tmp_path, "3.12", "riscv64"), fake_python(tmp_path, "3.12", "aarch64")]))
    found = find_python("3.12", "aarch64")
    assert found.path.endswith("python-aarch64") and found.machine == "aarch64"
    assert found.emulated is (os.uname().machine != "aarch64")
    assert find_python("3.12", "sparc64") is None


def test_a_build_without_the_functions_python_says_not_measured(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lambda_zip, "find_python", lambda version, arch=None: None)
    assert lambda_zip.compile_bytecode([tmp_path], "3.12", lambda _line: None) is None

    class Ctx:
        class manifest:  # noqa: N801 - the fields measure_cold_start reads
            target = load_target("aws-lambda-arm64")

    cold = lambda_zip.measure_cold_start(Ctx, tmp_path / "function.zip")
    assert cold.seconds is None and cold.runs == 0
    assert cold.note.startswith("not measured: no Python 3.12 for aarch64 on this machine")
    with pytest.raises(MlpackError, match=r"--max-cold-start 1.0s cannot be checked: not measured"):
        enforce_cold_start(cold, 1.0)


def test_an_emulated_cold_start_is_recorded_but_cannot_pass_a_budget() -> None:
    cold = ColdStart(seconds=2.5, peak_rss_mb=90, runs=5, python="qemu", note="under qemu", emulated=True)
    with pytest.raises(MlpackError, match="measured under emulation"):
        enforce_cold_start(cold, 10.0)


def test_snapstart_needs_a_lambda_zip_on_python_312_or_later() -> None:
    check_snapstart(load_target("aws-lambda"))
    check_snapstart(load_target("aws-lambda-arm64"))
    with pytest.raises(InputError, match="target x86-cpu builds no Lambda zip"):
        check_snapstart(load_target("x86-cpu"))
    older = load_target("aws-lambda").model_copy(
        update={"platform": load_target("aws-lambda").platform.model_copy(update={"python_version": "3.11"})})
    with pytest.raises(InputError, match="needs Python 3.12 or later"):
        check_snapstart(older)
