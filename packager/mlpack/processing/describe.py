"""The processing and the served signature in words: the build summary, report.md and
`mlpack inspect` say the same things."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..model.info import Signature, TensorSpec
from .schema import HookProcessing, ImagePreprocess, LabelsPostprocess, ProcessingSection, TextPreprocess

if TYPE_CHECKING:
    from ..manifest import Manifest


def step_line(step: TextPreprocess | ImagePreprocess | HookProcessing | LabelsPostprocess) -> str:
    """One line per step: what it is, where it came from, its settings."""
    if isinstance(step, TextPreprocess):
        padding = "the longest row" if step.padding == "longest" else f"{step.max_length} tokens"
        return (f"text: {step.found} fills {', '.join(step.feeds)}; at most {step.max_length} tokens "
                f"({step.max_length_from}), padded to {padding}")
    if isinstance(step, ImagePreprocess):
        spec = step.spec
        height, width = spec.size
        sizing = (f"shorter side to {spec.resize}, centre {height}x{width}" if spec.resize
                  else f"scaled to {height}x{width}")
        values = "0..255" if spec.dtype == "uint8" else f"/{spec.scale:g}, mean {spec.mean}, std {spec.std}"
        return (f"image: PNG/JPEG -> {sizing} ({spec.resample}), {spec.channels} {values}, "
                f"{spec.layout} {spec.dtype} -> {step.feed}")
    if isinstance(step, LabelsPostprocess):
        return (f"labels: {step.count} classes from {step.source}; top {step.top_k} of {step.output} "
                f"({step.scores}{', softmax at serving' if step.scores == 'logits' else ''})")
    name = PurePosixPath(step.module.path).name
    return f"hook: {name} ({', '.join(step.functions)}; sha256 {step.module.sha256[:12]})"


def section_lines(section: ProcessingSection) -> list[str]:
    return [step_line(step) for step in _unique(section.steps)]


def spec_text(spec: TensorSpec) -> str:
    return f"{spec.name}: {spec.dtype} {spec.shape_text()}"


def signature_lines(signature: Signature) -> list[str]:
    return [f"{kind}  {spec_text(spec)}" for kind, specs in (("input ", signature.inputs), ("output", signature.outputs))
            for spec in specs]


def processing_summary(manifest: Manifest) -> list[str]:
    """The build summary's lines for the processing and what the service then takes ([] without)."""
    section = manifest.processing
    if section is None:
        return []
    lines = [f"  processing {line}" for line in section_lines(section)]
    inputs = ", ".join(spec_text(s) for s in section.signature.inputs)
    outputs = ", ".join(spec_text(s) for s in section.signature.outputs)
    return [*lines, f"  serves     {inputs} -> {outputs}"]


def processing_markdown(manifest: Manifest) -> str:
    """report.md's Processing section ("" without processing)."""
    section = manifest.processing
    if section is None:
        return ""
    lines = ["", "## Processing", ""]
    lines += [f"- {line}" for line in section_lines(section)]
    lines += ["", "Served signature (after processing):", ""]
    lines += [f"- {line}" for line in signature_lines(section.signature)]
    lines += ["", "The build ran the sample request through the processing and the shipped model."]
    return "\n".join(lines) + "\n"


def _unique(steps: list) -> list:
    found: list = []
    for step in steps:  # a hook with both functions is one step on both sides
        if step not in found:
            found.append(step)
    return found
