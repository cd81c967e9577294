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


# The root of packager/mlpack: the entry point's package file and small modules every
# concern shares. Code that belongs to one concern lives in that concern's package.
ROOT_MODULES = {"__init__", "about", "artifact", "errors", "extras", "fsutil", "limits", "manifest", "paths",
                "progress", "resources", "sizes", "targets", "uv"}
ARCHITECTURE = Path(__file__).parent.parent / "docs" / "architecture.md"


def _packages(root: Path) -> set[str]:
    return {p.parent.relative_to(root).as_posix() for p in root.rglob("__init__.py") if p.parent != root}


def test_the_package_root_holds_only_entry_points_and_small_shared_modules() -> None:
    root = PACKAGES["mlpack"]
    modules = {p.stem for p in root.glob("*.py")}
    assert modules <= ROOT_MODULES, f"move {sorted(modules - ROOT_MODULES)} into the package of its concern"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_package_says_what_it_owns(package: str) -> None:
    for init in sorted(PACKAGES[package].rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring.split()) >= 5, f"{init}: a docstring naming the package's concern"


def _architecture_tree() -> dict[str, str]:
    """The entries of docs/architecture.md's packager/mlpack/ tree, by path (`build/run.py`,
    `optimize/variants/`): each is a line `<│ or spaces per level>├─ NAME` (or └─)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("```\npackager/mlpack/", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    parents: list[str] = []
    for line in block.splitlines():
        prefix, branch, rest = line.partition("─ ")
        if not branch or not prefix or prefix[-1] not in "├└":
            continue
        depth = len(prefix) // 4
        name = rest.split()[0]
        parents[depth:] = [name]
        entries["".join(parents)] = line
    return entries


def test_the_architecture_page_names_every_package_and_only_those() -> None:
    root = PACKAGES["mlpack"]
    named = {path.rstrip("/") for path in _architecture_tree() if path.endswith("/")}
    actual = _packages(root)
    assert not actual - named, f"docs/architecture.md's tree does not show {sorted(actual - named)}"
    assert not named - actual, f"docs/architecture.md's tree shows packages that are gone: {sorted(named - actual)}"


def test_every_module_the_architecture_page_names_exists() -> None:
    root = PACKAGES["mlpack"]
    named = [path for path in _architecture_tree() if path.endswith(".py")]
    assert named, "the tree names modules"
    assert [path for path in named if not (root / path).is_file()] == []


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
