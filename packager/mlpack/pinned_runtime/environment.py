"""TOOL: a folder holding the exact onnxruntime a target pins, for this interpreter, made once.

`uv pip install --target` into `~/.cache/mlpack/runtimes/` (or `$MLPACK_CACHE_DIR/runtimes`),
into a temporary folder first and renamed into place, so a killed install never leaves a
half folder that looks complete. numpy is pinned to the host's, as artifacts pin it.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from ..errors import MlpackError
from ..uv import run_uv

DONE = ".mlpack-complete"


def cache_root() -> Path:
    base = os.environ.get("MLPACK_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlpack"
    return Path(base) / "runtimes"


def runtime_env(package: str, version: str) -> Path:
    """The cached folder with `package==version` (and this host's numpy) for this interpreter."""
    numpy = metadata.version("numpy")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    folder = cache_root() / f"{package}-{version}-numpy-{numpy}-{tag}"
    if (folder / DONE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        run_uv(["pip", "install", "--quiet", "--target", str(staging), "--python", sys.executable,
                "--only-binary", ":all:", "--no-compile", f"{package}=={version}", f"numpy=={numpy}"],
               f"installing {package} {version}, the onnxruntime the target ships, to check the model on it",
               f"mlpack needs PyPI (or UV_INDEX_URL's mirror) once for it, then keeps it in {folder.parent}")
        (staging / DONE).write_text(f"{package}=={version}\n")
        try:
            os.rename(staging, folder)
        except OSError:  # another build made it meanwhile
            if not (folder / DONE).is_file():
                raise MlpackError(f"cannot create {folder}", "check that the cache folder is writable") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
