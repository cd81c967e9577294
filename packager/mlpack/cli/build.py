"""`mlpack build`: a deployable artifact for one target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .application import Application, command
from .options import (
    CalibrationOption, DriftOption, GateOption, ImagePreprocessOption, LabelsOption, JsonOption, ProcessingOption,
    QuietOption, SampleShapeOption, SloOption, TokenizerOption, TopKOption, VariantOption, gate_settings, key_values,
    processing_request, sample_shapes,
)


def build(
    app: Application,
    model: Annotated[
        Optional[Path],
        typer.Argument(help="ONNX model to package. Omit it to build the embedded demo model.", show_default=False),
    ] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Hardware target; see `mlpack targets`.")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the artifact `NAME-TARGET/` into.")] = Path("."),
    name: Annotated[Optional[str], typer.Option(help="Artifact name (default: the model file's name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing artifact folder.")] = False,
    calibration: CalibrationOption = None,
    sample_shape: SampleShapeOption = None,
    max_cold_start: Annotated[
        Optional[float],
        typer.Option(help="Lambda targets: fail the build if the measured cold start exceeds this many seconds."),
    ] = None,
    snapstart: Annotated[
        bool,
        typer.Option("--snapstart", help="Lambda targets (Python 3.12+): turn on SnapStart in the IaC: published "
                     "versions are snapshotted after init, invocations go through the alias 'live'. "
                     "See docs/deploy.md for its cost."),
    ] = False,
    gate: GateOption = None,
    drift: DriftOption = None,
    variant: VariantOption = None,
    max_request_mb: Annotated[
        Optional[float],
        typer.Option(help="Largest request body the service accepts, in MiB; a larger one gets HTTP 413 before "
                          "it is read (default: the target's [serving] max_request_mb).", show_default=False),
    ] = None,
    max_rows: Annotated[
        Optional[int],
        typer.Option(help="Most rows per input in one request; more get HTTP 400 naming the input "
                          "(default: the target's [serving] max_rows).", show_default=False),
    ] = None,
    allow_non_finite: Annotated[
        bool,
        typer.Option("--allow-non-finite", help="Serve NaN and infinite numbers in float inputs; by default a "
                                                "request holding one gets HTTP 400 naming the input."),
    ] = False,
    slo: SloOption = None,
    autoscaler: Annotated[
        Optional[str],
        typer.Option("--autoscaler", metavar="hpa|keda",
                     help="Kubernetes targets: scale on CPU (hpa, a HorizontalPodAutoscaler) or on the agent's requests "
                          "in flight (keda, a KEDA ScaledObject on Prometheus). Default: the target's [kubernetes] "
                          "autoscaler. See docs/kubernetes.md.", show_default=False),
    ] = None,
    delivery: Annotated[
        Optional[str],
        typer.Option("--delivery", metavar="none|argo-rollouts|flagger",
                     help="Kubernetes targets: roll new versions out in canary steps judged by the service-level "
                          "objective, with an Argo Rollouts Rollout and AnalysisTemplate or a Flagger Canary and "
                          "MetricTemplates (rolled back when a check fails). Default: the target's, none: the "
                          "Deployment's rolling update. See docs/kubernetes.md.", show_default=False),
    ] = None,
    tokenizer: TokenizerOption = None,
    labels: LabelsOption = None,
    top_k: TopKOption = 5,
    image_preprocess: ImagePreprocessOption = None,
    processing: ProcessingOption = None,
    quiet: QuietOption = False,
    image: Annotated[bool, typer.Option("--image", help="Also build the container image (see `mlpack image`).")] = False,
    base_image: Annotated[
        Optional[str], typer.Option("--base-image", help="With --image: build on this base (e.g. a mirror).")
    ] = None,
    json_summary: JsonOption = False,
) -> None:
    """Build a deployable artifact for one target: optimized model, Bento or Lambda
    package, container context, telemetry agent files and infrastructure code."""
    from ..artifact import Artifact
    from ..build import BuildRequest, build as run_build
    from ..targets import Slo
    from ..build.summary import build_json, build_summary

    progress = app.progress(quiet)
    result = run_build(
        BuildRequest(model=model, target=target, out=out, name=name, force=force, calibration=calibration,
                     max_cold_start=max_cold_start, snapstart=snapstart, gate=gate_settings(gate), variant=variant,
                     sample_shapes=sample_shapes(sample_shape),
                     max_request_mb=max_request_mb, max_rows=max_rows, allow_non_finite=allow_non_finite or None,
                     drift=key_values("--drift", drift, "psi_threshold=0.2"),
                     processing=processing_request(tokenizer, labels, top_k, image_preprocess, processing),
                     slo=key_values("--slo", slo, "latency_s=0.25", list(Slo.model_fields)),
                     autoscaler=autoscaler, delivery=delivery),
        progress,
    )
    if not json_summary:
        app.echo(build_summary(result))
    built = None
    if image:
        from ..image.build import build_image

        built = build_image(Artifact.open(result.path), base_image=base_image, progress=progress)
        if not json_summary:
            app.echo(f"  image      {built.ref}  {built.platform}  {built.id}")
    if json_summary:
        summary = build_json(result)
        if built is not None:
            summary["image"] = {**summary["image"], "ref": built.ref, "id": built.id, "platform": built.platform}
        app.echo_json(summary)


def register(cli: typer.Typer) -> None:
    cli.command("build")(command(build))
