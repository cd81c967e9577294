"""Nothing of the tests ships: no Bento, Lambda app or zip, image build context or mlpack
wheel carries test code (the harnesses live in tests/, see agent_harness.py, standin.py).

Scanned are real artifacts (the demo of every target), the context `mlpack image` stages
(without buildah: `stage_context` copies and builds the agent wheel, the image build is
not needed) and a wheel built from the repository. Third-party packages are not ours to
judge (numpy ships numpy/testing); mlpack's own code is every file of mlpack, mlpack_runtime
and mlpack_agent, and every top-level file of an app or zip (the entry points).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest

from mlpack.image.context import stage_context
from mlpack.targets import load_target, target_files

OWN_PACKAGES = ("mlpack", "mlpack_runtime", "mlpack_agent")
# File and folder names that are test code wherever they appear in our code.
TEST_FILE = re.compile(r"(conftest|testing|standin|agent_harness|test_\w+|\w+_test)\.py")
TEST_FOLDERS = {"tests", "test", "testing"}
# What the harnesses (and a test module) contain; none of it belongs in shipped code.
TEST_TEXT = re.compile(rb"^\s*(import pytest|from pytest\b|from tests[. ]|import tests\b)"
                       rb"|class (AgentProcess|OtlpReceiver|PrometheusServer|ExtensionsApi|BentoServer|FunctionURL)\b"
                       rb"|def ensure_standin\b|mlpack_agent\.testing|mlpack\.image\.standin", re.M)

Entry = tuple[str, Callable[[], bytes]]  # a path inside what ships, and how to read it


def find_test_code(entries: Iterable[Entry], everything_ours: bool = False) -> list[str]:
    """The entries that are test code, each with why. In a zip of installed packages only
    our own code counts, unless `everything_ours` (a folder we wrote, our wheel)."""
    found = []
    for name, read in entries:
        parts = name.split("/")
        if not (everything_ours or len(parts) == 1 or parts[0] in OWN_PACKAGES):
            continue
        if TEST_FOLDERS & set(parts[:-1]):
            found.append(f"{name}: in a test folder")
        elif TEST_FILE.fullmatch(parts[-1]):
            found.append(f"{name}: a test file")
        elif name.endswith(".py") and (match := TEST_TEXT.search(read())):
            found.append(f"{name}: {match.group(0).decode().strip()!r}")
    return found


def folder_entries(root: Path) -> Iterator[Entry]:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root).as_posix(), path.read_bytes


def zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, lambda info=info: archive.read(info)


def test_the_scan_finds_test_code_and_leaves_third_party_packages_alone(tmp_path: Path) -> None:
    """The scan can fail: each kind of test code is found, in a folder and in a zip."""
    shipped = {
        "mlpack_agent/testing.py": "x = 1\n",
        "mlpack/image/standin.py": "x = 1\n",
        "mlpack_runtime/tests/helpers.py": "x = 1\n",
        "conftest.py": "x = 1\n",
        "mlpack_agent/extras.py": "class OtlpReceiver:\n    pass\n",
        "handler.py": "import pytest\n",
        "mlpack/cli.py": "from tests.agent_harness import free_port\n",
        # Clean: our code that only mentions testing, and third-party test code.
        "mlpack/runtime/config.py": "# reads what testing showed\nimport json\n",
        "numpy/testing/__init__.py": "import pytest\n",
        "numpy/conftest.py": "import pytest\n",
    }
    flagged = set(shipped) - {"mlpack/runtime/config.py", "numpy/testing/__init__.py", "numpy/conftest.py"}
    folder = tmp_path / "app"
    with zipfile.ZipFile(tmp_path / "function.zip", "w") as archive:
        for name, text in shipped.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            archive.writestr(name, text)
    in_zip = find_test_code(zip_entries(tmp_path / "function.zip"))
    assert {line.split(":")[0] for line in in_zip} == flagged, in_zip
    in_app = find_test_code(folder_entries(folder), everything_ours=True)
    assert {line.split(":")[0] for line in in_app} == set(shipped) - {"mlpack/runtime/config.py"}, in_app


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(target_files()))
def test_no_artifact_ships_test_code(demo_artifact, target: str) -> None:
    artifact = demo_artifact(target).path
    scanned = [part for part in ("bento", "lambda/app") if (artifact / part).is_dir()]
    assert scanned, f"{target} builds neither a Bento nor a Lambda app"
    found = [f"{part}/{item}" for part in scanned for item in find_test_code(folder_entries(artifact / part),
                                                                           everything_ours=True)]
    if (artifact / "lambda" / "function.zip").is_file():
        found += [f"lambda/function.zip!{item}" for item in find_test_code(zip_entries(artifact / "lambda" / "function.zip"))]
    assert found == []


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(target_files()))
def test_no_image_build_context_ships_test_code(demo_artifact, target: str, tmp_path: Path) -> None:
    context = stage_context(demo_artifact(target).path, load_target(target), tmp_path / "context", prefetch=False)
    wheels = sorted(context.rglob("mlpack_agent-*.whl"))
    assert wheels, "the context carries the agent wheel"
    found = find_test_code(folder_entries(context), everything_ours=True)
    for wheel in wheels:
        found += [f"{wheel.name}!{item}" for item in find_test_code(zip_entries(wheel), everything_ours=True)]
    assert found == []


def test_the_mlpack_wheel_ships_no_test_code(mlpack_wheel: Path) -> None:
    assert "mlpack/_data/agent/mlpack_agent/client.py" in zipfile.ZipFile(mlpack_wheel).namelist()
    assert find_test_code(zip_entries(mlpack_wheel), everything_ours=True) == []
