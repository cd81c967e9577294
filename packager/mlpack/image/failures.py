"""Why an image build failed, in one line a user can act on.

A builder's output ends with its own summary, which for a failed RUN step quotes the whole
shell script (`Error: building at STEP "RUN set -eu; ...": exit status 1`), and says
nothing of the cause it printed earlier. `explain_build_failure` reads the output for the
causes a user can fix (a base image that cannot be pulled, a foreign architecture with no
emulation) and otherwise names the failed step by its number and instruction, with its
last line of output, never the script itself.
"""

from __future__ import annotations

import re

from ..errors import MlpackError
from .emulation import emulation_problem, host_platform

OFFLINE_DOC = "docs/images.md"
LOG_HINT = "see the build output above (rerun without -q)"

# A base image that could not be fetched: buildah/podman, then the Docker daemon's words.
_PULL = re.compile(
    r"initializing source docker://|pinging container registry|pull access denied|manifest unknown"
    r"|manifest for \S+ not found|failed to resolve source metadata|error pulling image|toomanyrequests"
    r"|Get \"?https://[^/\s]+/v2/", re.IGNORECASE)
_SOURCE = re.compile(r"initializing source docker://\S+?: (.*)")
_EXEC_FORMAT = re.compile(r"exec format error", re.IGNORECASE)
# buildah: `[1/2] STEP 2/3: RUN ...` (the stage prefix only for multi-stage builds); docker: `Step 2/9 : RUN ...`.
_STEP = re.compile(r"^\s*(?:\[(\d+)/(\d+)\]\s*)?STEP (\d+)/(\d+)\s*:\s*(\w+)", re.IGNORECASE)
# What the builders say about a failed step themselves: not the step's own output.
_BUILDER_NOISE = re.compile(
    r"building at STEP|subprocess exited|process exited with error|process failed to start"
    r"|returned a non-zero code|^\s*error:", re.IGNORECASE)
_BUILDAH_REASON = re.compile(r"building at STEP \".*\": (.+)$")
_DOCKER_REASON = re.compile(r"The command '.*' returned a non-zero code: (\d+)")


def explain_build_failure(tool: str, ref: str, platform: str, output: str, base: str | None,
                          base_given: bool = False) -> MlpackError:
    """The one-line error for a failed build of `ref` for `platform` on `base` (`base_given`:
    by --base-image, not the Dockerfile's default), from the builder's last lines of output."""
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    last = next((found for found in map(_STEP.match, reversed(lines)) if found), None)
    pull = next((line for line in reversed(lines) if _PULL.search(line)), None)
    if pull is not None and (last is None or last.group(5).upper() == "FROM"):  # failed at a FROM, not after it
        return _pull_failure(base, base_given, pull)
    if any(_EXEC_FORMAT.search(line) for line in lines):
        start = f"{tool} could not build {ref}: a RUN step could not start (exec format error)"
        arch = platform.split("/")[-1]
        if tool == "docker" and platform != host_platform():  # the daemon's machine emulates, not this one
            return MlpackError(f"{start}: the Docker host does not run {arch} programs",
                               f"enable emulation on the Docker host: docker run --privileged --rm "
                               f"tonistiigi/binfmt --install {arch}")
        no_emulation = emulation_problem(platform)
        if no_emulation is not None:
            return MlpackError(f"{start}: {no_emulation.message}", no_emulation.hint)
        return MlpackError(f"{start}: the base image {base or '(the Dockerfile default)'} holds programs for "
                           f"another platform than {platform}", f"pass --base-image with a {platform} image")
    return MlpackError(f"{tool} could not build {ref}: {_failed_step(lines)}", LOG_HINT)


def _pull_failure(base: str | None, base_given: bool, line: str) -> MlpackError:
    found = _SOURCE.search(line)
    reason = _short((found.group(1) if found else re.sub(r"^(error|Error):\s*", "", line)).strip())
    what = f"the base image {base}" if base else "the base image"
    if base_given:
        return MlpackError(f"--base-image {base} could not be pulled ({reason})",
                           f"check its name and that its registry is reachable, or that it is in the local "
                           f"image store; {OFFLINE_DOC} shows how to make a base offline")
    return MlpackError(
        f"{what} could not be pulled ({reason})",
        f"build on a mirror or a local copy with --base-image IMAGE; {OFFLINE_DOC} shows how to make one offline",
    )


def _failed_step(lines: list[str]) -> str:
    """`step 2/3 of stage 1/2 (RUN) failed (exit status 1); its last output: "..."`, or the
    builder's last error line with any quoted script left out."""
    last_step = max((i for i, line in enumerate(lines) if _STEP.match(line)), default=None)
    reason = next((_reason(line) for line in reversed(lines) if _reason(line)), None)
    if last_step is None:
        errors = [line for line in lines if re.search(r"error", line, re.IGNORECASE)] or lines or ["no output"]
        return _short(_without_script(errors[-1]))
    stage, stages, step, steps, instruction = _STEP.match(lines[last_step]).groups()
    where = f"step {step}/{steps}" + (f" of stage {stage}/{stages}" if stage and stages != "1" else "")
    text = f"{where} ({instruction.upper()}) failed" + (f" ({reason})" if reason else "")
    said = [line for line in lines[last_step + 1:] if not _BUILDER_NOISE.search(line) and not _STEP.match(line)]
    return text + (f'; its last output: "{_short(said[-1], 160)}"' if said else "")


def _reason(line: str) -> str | None:
    found = _BUILDAH_REASON.search(line)
    if found:
        return found.group(1)
    found = _DOCKER_REASON.search(line)
    return f"exit status {found.group(1)}" if found else None


def _without_script(line: str) -> str:
    line = re.sub(r'(building at STEP) ".*": ', r"\1: ", line)
    return re.sub(r"The command '.*' returned", "A RUN step returned", line)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."
