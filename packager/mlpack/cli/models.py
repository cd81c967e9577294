"""`mlpack targets` and `mlpack inspect`: what mlpack builds for, and what a model looks like."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .application import Application, command
from .options import (
    ImagePreprocessOption, LabelsOption, ProcessingOption, TokenizerOption, TopKOption, processing_request,
)

if TYPE_CHECKING:
    from ..model.info import ModelInfo


def targets(
    app: Application,
    variants: Annotated[bool, typer.Option(
        "--variants", help="Under each target, the names its `--variant` accepts (float and the variants it "
                           "tries), each with what it makes.")] = False,
) -> None:
    """List the hardware targets mlpack builds for."""
    from ..optimize.variants.registry import summary
    from ..targets import known_targets

    found = known_targets()
    width = max(len(t.name) for t in found)
    for target in found:
        app.echo(f"{target.name:<{width}}  {target.platform.oci:<11}  {target.description}")
        if variants:
            names = ["float", *target.optimize.variants]
            name_width = max(map(len, names))
            for name in names:
                app.echo(f"  {name:<{name_width}}  {summary(name)}")


def inspect(
    app: Application,
    model: Annotated[Path, typer.Argument(help="Path to an ONNX model.", show_default=False)],
    tokenizer: TokenizerOption = None,
    labels: LabelsOption = None,
    top_k: TopKOption = 5,
    image_preprocess: ImagePreprocessOption = None,
    processing: ProcessingOption = None,
    target: Annotated[str | None, typer.Option(
        "--target", "-t", help="Also say whether the onnxruntime release this target ships reads the model "
                               "(as it is, or after a safe rewrite of its IR version); fails when it cannot.",
        show_default=False)] = None,
) -> None:
    """Check a model and print what mlpack sees: inputs (strings, optional ones and their
    defaults), outputs (maps of class probabilities too), external data files, and the
    operators that need a locale, each with what a build does about it; with processing
    (given, or a tokenizer.json beside the model), what a build would serve; with
    --target, whether that target's runtime can load it."""
    from ..model.info import inspect_model
    from ..targets import load_target

    chosen = load_target(target) if target is not None else None  # an unknown name fails before any work
    info = inspect_model(model)
    for line in describe_model(info):
        app.echo(line)
    if chosen is not None:
        app.echo(runtime_line(info, chosen))
    _inspect_processing(app, info, processing_request(tokenizer, labels, top_k, image_preprocess, processing))


def describe_model(info: ModelInfo) -> list[str]:
    """`mlpack inspect`'s lines: one per input, output, weight file and locale-dependent node."""
    from ..model.files import PROTOBUF_LIMIT
    from ..sizes import format_size

    lines = [f"{info.path.name}: opset {info.opset}, {format_size(info.size_bytes)}, "
             f"{info.producer or 'unknown producer'}"]
    for spec in info.signature.inputs:
        line = f"  input   {spec.name}: {spec.type_text()} {spec.shape_text()}"
        if spec.name in info.defaults:
            values = info.defaults[spec.name]
            shown = ", ".join(map(str, values[:4])) + (", ..." if len(values) > 4 else "")
            line += f" (optional: default [{shown}] when a request leaves it out)"
        elif spec.optional:
            line += " (optional: a request may leave it out)"
        lines.append(line)
    for spec in info.signature.outputs:
        line = f"  output  {spec.name}: {spec.type_text()}"
        if spec.is_tensor:
            line += f" {spec.shape_text()}"
        elif spec.dtype.startswith("seq(map("):
            classes = info.classes.get(spec.name)
            named = f"{len(classes)} classes: {', '.join(map(str, classes[:8]))}{', ...' if len(classes) > 8 else ''}" \
                if classes else "classes as the model returns them"
            line += (f": a {{class: probability}} map per row ({named}); served as those maps, "
                     "gated as a [rows, classes] probability table")
        elif spec.dtype.startswith("seq("):
            line += ": a sequence per request; served as a list, gated as its values in order"
        elif spec.dtype.startswith("map("):
            line += ": one map per request; served as a JSON object, gated as its values by key"
        lines.append(line)
    if info.external_files:
        total = sum(f.size_bytes for f in info.external_files)
        files = ", ".join(f"{f.name} ({format_size(f.size_bytes)})" for f in info.external_files)
        why = (" (over protobuf's 2 GB limit: it can only be stored external)" if total > PROTOBUF_LIMIT else "")
        lines.append(f"  weights external data: {files}{why}; kept external through optimization, "
                     "shipped as model.onnx + model.onnx.data")
    else:
        lines.append("  weights inline (in the .onnx file)")
    for node in info.locale_nodes:
        lines.append(f"  locale  {node.op_type} {node.node!r} needs a C library locale: {node.action()}")
    return lines


def runtime_line(info: ModelInfo, target) -> str:
    """Whether the onnxruntime release `target` pins reads the model; InputError when it cannot."""
    import onnx

    from ..optimize.pipeline import runtime_fit
    from ..pinned_runtime import for_target

    fit = runtime_fit(onnx.load(str(info.path), load_external_data=False), target)
    runtime = for_target(target)
    how = f"once the build rewrites it ({fit.rewrite})" if fit.rewrite else f"as it is (IR version {fit.ir_version}, opset {info.opset})"
    return (f"  runtime {target.name} ships {runtime} (reads IR {runtime.limits.max_ir_version}, "
            f"opset {runtime.limits.max_opset} at most): it loads this model {how}")


def _inspect_processing(app: Application, info, request) -> None:
    """The processing a build would bundle, checked on the model, and the signature it serves."""
    from ..processing import resolve_processing
    from ..processing.describe import section_lines, signature_lines

    resolved = resolve_processing(request, info, {})
    if resolved is None:
        return
    app.echo("processing")
    for line in section_lines(resolved.section):
        app.echo(f"  {line}")
    app.echo("served (after processing)")
    for line in signature_lines(resolved.section.signature):
        app.echo(f"  {line}")


def register(cli: typer.Typer) -> None:
    cli.command("targets")(command(targets))
    cli.command("inspect")(command(inspect))
