"""Whether this machine runs another architecture's programs, as a local build of a foreign
image needs: its RUN steps (the Dockerfiles' build stages run a shell) start programs of
the image's architecture, which run here only under qemu-user registered with binfmt_misc.
"""

from __future__ import annotations

import platform
from pathlib import Path

from ..errors import MlpackError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
QEMU_NAMES = {"amd64": "x86_64", "arm64": "aarch64"}  # OCI architecture -> qemu's name for it
_OCI_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform() -> str:
    machine = platform.machine().lower()
    return f"linux/{_OCI_ARCH.get(machine, machine)}"


def emulation_hint(arch: str) -> str:
    """The commands that make this machine run `arch` programs (Debian and Ubuntu), as root."""
    qemu = QEMU_NAMES.get(arch, arch)
    mount = f"mount -t binfmt_misc binfmt_misc {BINFMT_MISC} && " if not (BINFMT_MISC / "status").exists() else ""
    return (f"enable emulation, as root: {mount}apt-get install qemu-user-static binfmt-support && "
            f"update-binfmts --enable qemu-{qemu}; or build on a linux/{arch} machine")


def emulation_problem(target_platform: str) -> MlpackError | None:
    """Why a local build for `target_platform` cannot run its RUN steps here, or None."""
    host = host_platform()
    if target_platform == host:
        return None
    arch = target_platform.split("/")[-1]
    qemu = QEMU_NAMES.get(arch, arch)
    entry = BINFMT_MISC / f"qemu-{qemu}"
    if not (BINFMT_MISC / "status").exists():
        why = "binfmt_misc is not mounted"
    elif not entry.is_file():
        why = f"qemu-{qemu} is not registered with binfmt_misc"
    else:
        lines = entry.read_text().splitlines()
        flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
        if lines[:1] != ["enabled"]:
            why = f"qemu-{qemu} is registered with binfmt_misc but disabled"
        elif "F" not in flags:  # without it the interpreter is looked up inside the build's chroot
            why = f"qemu-{qemu} is registered without the F flag (qemu-user-static's entries have it)"
        else:
            return None
    return MlpackError(f"building a {target_platform} image on this {host} machine runs its RUN steps under "
                       f"emulation, and {why}", emulation_hint(arch))
