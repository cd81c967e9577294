"""Whether the shared libraries a GPU image must load resolve inside it, read from the ELF files.

Before an image is built, `mlpack image` checks the staged site-packages: every NEEDED entry
of onnxruntime-gpu's CUDA provider (and of the cuDNN libraries kept) must be found, with
what it needs in turn, in the CUDA wheels' library folders, beside the library itself
($ORIGIN), in the base (glibc's family, which every Debian or Ubuntu base has, and what
the target says its base provides), or among the driver's libraries, which the host
mounts. A CUDA 12 base under a CUDA 13 onnxruntime-gpu fails here, in one line, before any
image is built; the Dockerfile's build stage checks the same with `ldd` on the real base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from ..errors import MlpackError
from ..render.facts import CudaFacts
from ..targets import Target

# In every glibc-based image (Debian, Ubuntu): the C library's family, the GCC runtime, zlib.
BASE_LIBRARIES = frozenset({
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libresolv.so.2",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
})


def needed(library: Path) -> tuple[list[str], list[str]]:
    """A shared library's NEEDED entries and its RUNPATH/RPATH folders ($ORIGIN resolved)."""
    with library.open("rb") as file:
        elf = ELFFile(file)
        names, paths = [], []
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    names.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                    paths += [p.replace("$ORIGIN", str(library.parent)) for p in value.split(":") if p]
    return names, paths


def missing_libraries(site: Path, libraries: Iterable[str], library_dirs: Iterable[str],
                      provided: Iterable[str]) -> dict[str, list[str]]:
    """{library: [NEEDED entries found nowhere]} for each of `libraries` (paths relative to
    `site`) and, transitively, what they load from inside the image."""
    search = [site / d for d in library_dirs]
    given = BASE_LIBRARIES | set(provided)
    problems: dict[str, list[str]] = {}
    seen: set[Path] = set()
    queue = [(name, site / name) for name in libraries]
    while queue:
        label, path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        if not path.is_file():
            problems.setdefault(label, []).append(path.name)  # the library itself is not there
            continue
        names, runpath = needed(path)
        for name in names:
            if name in given:
                continue
            found = next((d / name for d in [*(Path(p) for p in runpath), *search] if (d / name).is_file()), None)
            if found is None:
                problems.setdefault(label, []).append(name)
            else:
                queue.append((f"{label} -> {name}", found.resolve()))
    return problems


def check_cuda_libraries(site: Path, target: Target, cuda: CudaFacts) -> None:
    """Raise one MlpackError when the staged image could not load its CUDA provider."""
    provided = [*target.image.provides_libraries, *cuda.from_host]
    problems = missing_libraries(site, cuda.check, cuda.library_dirs, provided)
    if not problems:
        return
    names = sorted({name for found in problems.values() for name in found})
    where = ", ".join(f"{lib} needs {', '.join(found)}" for lib, found in sorted(problems.items()))
    raise MlpackError(
        f"the {target.name} image could not load onnxruntime-gpu's CUDA provider: {', '.join(names)} "
        f"in neither its CUDA wheels ({', '.join(target.cuda.wheels)}) nor its base {target.image.base} ({where})",
        f"make targets/{target.name}.toml's [cuda] wheels match the CUDA release onnxruntime-gpu is built for, "
        "or list what the base provides in [image] provides_libraries",
    )
