"""`mlpack serve ARTIFACT`: run an artifact locally as in production, with its telemetry agent."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from .application import Application, command
from .options import ArtifactArgument, QuietOption


def serve(
    app: Application,
    artifact: ArtifactArgument,
    port: Annotated[int, typer.Option("--port", "-p", help="Port of the model's HTTP API.", min=1, max=65535)] = 3000,
    agent_port: Annotated[int, typer.Option(help="Port of the telemetry agent's Prometheus /metrics.",
                                            min=1, max=65535)] = 9464,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    allow_cpu: Annotated[bool, typer.Option(
        "--allow-cpu", help="Serve a GPU artifact on the CPU on purpose when its GPU provider does not load here "
                            "(sets MLPACK_ALLOW_CPU=1). Without it such an artifact refuses to start, naming the "
                            "library that failed: it never falls back to the CPU in silence.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Serve an artifact on this machine as it runs in production, with its telemetry agent
    beside it: a Bento through `bentoml serve`; a Lambda package through its handler under
    AWS's runtime interface client and a local Runtime API, behind an HTTP front that sends
    Function URL events. A Bento runs on the onnxruntime release the artifact pins (for a GPU
    target onnxruntime-gpu, fetched once into mlpack's cache when this installation has
    another). Prints the URLs; Ctrl-C or SIGTERM stops both processes."""
    from ..artifact import Artifact
    from ..serve import Endpoint, ServeOptions, drift_lines, serve as run_serve

    opened = Artifact.open(artifact)
    options = ServeOptions(host=host, port=port, agent_port=agent_port, allow_cpu=allow_cpu)

    def ready(found: list[Endpoint], what: str) -> None:
        app.echo(f"Serving {opened.name} ({opened.manifest.target.name}): {what}")
        for endpoint in found:
            app.echo(f"  {endpoint.what:<8} {endpoint.method:<4} {endpoint.url}")
        for i, line in enumerate(drift_lines(opened)):
            app.echo(f"  {'drift' if i == 0 else '':<8} {line}")
        app.echo("Ctrl-C or SIGTERM stops the service and its agent.")

    stopped_by = run_serve(opened, options, app.progress(quiet), ready)
    if stopped_by is not None:
        app.progress(quiet).info(f"Stopped ({signal.Signals(stopped_by).name}); nothing is left running.")


def register(cli: typer.Typer) -> None:
    cli.command("serve")(command(serve))
