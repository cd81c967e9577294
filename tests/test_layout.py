"""How the code is laid out: rules that keep it easy to read and safe to ship."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGES = {"mlpack": Path(__file__).parent.parent / "packager" / "mlpack",
            "mlpack_agent": Path(__file__).parent.parent / "agent" / "mlpack_agent"}


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(module: str, path: Path, is_package: bool) -> set[str]:
    """Modules imported at module level: when this module is imported, and those only type
    checkers read (`if TYPE_CHECKING:`), which tie the modules together just the same. Not
    the ones inside functions."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in tree.body:
        for item in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(item, ast.Import):
                found.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom):
                anchor = base[: len(base) - item.level + 1] if item.level else []
                target = ".".join([*anchor, *(item.module.split(".") if item.module else [])])
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in item.names)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    root = PACKAGES[package]
    modules = {_module_name(package, root, p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = _top_level_imports(name, path, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle_at_module_level(package: str) -> None:
    graph = import_graph(package)
    # A package's __init__ importing its own submodules is how packages export names:
    # only cycles between distinct modules count.
    for name, imported in graph.items():
        graph[name] = {m for m in imported if not name.startswith(m + ".")}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_agent_distribution_imports_nothing_of_mlpack() -> None:
    for path in PACKAGES["mlpack_agent"].rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n == "mlpack" or n.startswith(("mlpack.", "bentoml")) for n in names), path


def test_the_serving_runtime_imports_only_the_standard_library_numpy_and_onnxruntime() -> None:
    """runtime/ is copied verbatim into every artifact as `mlpack_runtime`. The processing an
    artifact declares brings its own library, imported inside the one module that needs it
    (never at module level), so an artifact without that processing neither ships nor loads it."""
    import sys

    # snapshot_restore_py: SnapStart's hook registry, part of Lambda's Python runtimes; the
    # runtime imports it only where it is there (runtime/snapstart.py).
    allowed = {"numpy", "onnxruntime", "mlpack_agent", "snapshot_restore_py", "__future__"} | set(
        sys.stdlib_module_names)
    processing_library = {"text.py": "tokenizers", "image.py": "PIL"}
    # The h11 protocol with a request-head deadline extends uvicorn's: only the Bento service
    # and mlpack serve's Function URL front import it, where uvicorn runs anyway.
    server_library = {"uvicorn_guard.py": {"uvicorn"}}
    runtime = PACKAGES["mlpack"] / "runtime"
    for path in runtime.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            library = processing_library.get(path.name) if path.parent.name == "processing" else None
            if library in roots:
                assert id(node) not in top_level, f"{path.name} imports {library} at module level"
                roots -= {library}
            assert roots <= allowed | server_library.get(path.name, set()), f"{path.name} imports {roots - allowed}"
