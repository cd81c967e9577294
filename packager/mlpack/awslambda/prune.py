"""What a Lambda function's packages carry that its handler never imports, and its removal.

Wheels ship their tests, type stubs, C headers, static libraries, build tools and, for
onnxruntime, a C API library and the dependencies of its model tools: tens of MB that a
cold start never reads but that count against Lambda's 50 MB zip and 250 MB unzipped
limits. Each rule names a kind of file and why the handler does without it; the zip
step (`zip_step.py`) applies them in Python and records what each removed, and
the function image's Dockerfile (`templates/container/lambda/`) runs the same rules as
shell commands (`shell_commands`). Pure data and file operations, no tools.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..targets import Target


@dataclass(frozen=True)
class PruneRule:
    """Paths (relative to the site folder, `fnmatch` patterns, '/'-separated) of one kind.

    `paths` match a file or a folder by its whole relative path; `names` match any file or
    folder by its own name, at any depth."""

    kind: str
    why: str
    paths: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pruned:
    """What one rule removed."""

    kind: str
    files: int
    bytes: int


_COMMON = (
    PruneRule("tests", "test suites and test-only modules: never imported by a handler",
              paths=("numpy/testing", "numpy/_core/_simd.*", "numpy/random/_examples"),
              names=("tests", "test", "conftest.py")),
    PruneRule("type stubs", "read by type checkers, not by Python",
              names=("*.pyi", "py.typed")),
    PruneRule("headers and static libraries", "for compiling extensions against the package",
              paths=("numpy/_core/include", "numpy/_core/lib", "numpy/random/lib"),
              names=("*.h", "*.hpp", "*.pxd", "*.pyx", "*.a", "*.pc")),
    PruneRule("docs", "package documentation (license and notice files stay)",
              paths=("numpy/ma/README.rst", "numpy/ma/API_CHANGES.txt", "onnxruntime/Privacy.md")),
    PruneRule("tools", "command-line tools, build helpers and onnxruntime's model tools (quantization, "
              "transformers, conversion): none runs at serving",
              paths=("bin", "onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization",
                     "onnxruntime/datasets", "onnxruntime/backend", "numpy/f2py", "numpy/_pyinstaller",
                     "numpy/distutils")),
    PruneRule("dependencies of onnxruntime's tools", "protobuf and flatbuffers serve the model tools removed "
              "above; the inference session does not import them",
              paths=("google/protobuf", "google/_upb", "protobuf-*.dist-info", "flatbuffers",
                     "flatbuffers-*.dist-info")),
)
# The CPU package's Python binding holds onnxruntime itself; libonnxruntime.so is the C
# API for other languages (the same rule as the server images: facts.container).
_C_API = PruneRule("onnxruntime's C API", "libonnxruntime.so serves C/C++ callers; the Python binding does not "
                   "load it", paths=("onnxruntime/capi/libonnxruntime.so*",))


def prune_rules(target: Target) -> tuple[PruneRule, ...]:
    return _COMMON + ((_C_API,) if target.runtime.onnxruntime == "onnxruntime" else ())


def _matches(rule: PruneRule, relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return (any(fnmatch.fnmatchcase(relative, p) for p in rule.paths)
            or any(fnmatch.fnmatchcase(name, n) for n in rule.names))


def _size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return 1, path.stat().st_size
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def prune(site: Path, rules: tuple[PruneRule, ...]) -> list[Pruned]:
    """Remove what the rules name from `site`; what each rule removed, in rule order."""
    removed = {rule.kind: [0, 0] for rule in rules}
    # Walk top-down so a removed folder is not walked into; sorted for a stable record.
    stack = [site]
    while stack:
        folder = stack.pop()
        for path in sorted(folder.iterdir(), reverse=True):
            relative = path.relative_to(site).as_posix()
            rule = next((r for r in rules if _matches(r, relative)), None)
            if rule is None:
                if path.is_dir() and not path.is_symlink():
                    stack.append(path)
                continue
            files, size = _size(path)
            removed[rule.kind][0] += files
            removed[rule.kind][1] += size
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    _remove_empty_folders(site)
    return [Pruned(kind, files, size) for kind, (files, size) in removed.items() if files]


def _remove_empty_folders(site: Path) -> None:
    for folder in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def shell_commands(rules: tuple[PruneRule, ...], site: str) -> list[str]:
    """The rules as POSIX shell commands on the folder `site` (a shell variable or path)."""
    commands = ["rm -rf " + " ".join(f"{site}/{p}" for p in rule.paths) for rule in rules if rule.paths]
    names = [n for rule in rules for n in rule.names]
    if names:
        tests = " -o ".join(f"-name '{n}'" for n in names)
        commands.append(f"find {site} -depth \\( {tests} \\) -exec rm -rf {{}} +")
    commands.append(f"find {site} -depth -type d -empty -delete")
    return commands
