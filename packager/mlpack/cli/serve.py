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
    quiet: QuietOption = False,
) -> None:
    """Serve an artifact on this machine as it runs in production, with its telemetry agent
    beside it: a Bento through `bentoml serve`; a Lambda package through its handler under
    AWS's runtime interface client and a local Runtime API, behind an HTTP front that sends
    Function URL events. Prints the URLs; Ctrl-C or SIGTERM stops both processes."""
    from ..artifact import Artifact
    from ..serve import Endpoint, ServeOptions, serve as run_serve

    opened = Artifact.open(artifact)
    options = ServeOptions(host=host, port=port, agent_port=agent_port)

    def ready(found: list[Endpoint], what: str) -> None:
        app.echo(f"Serving {opened.name} ({opened.manifest.target.name}): {what}")
        for endpoint in found:
            app.echo(f"  {endpoint.what:<8} {endpoint.method:<4} {endpoint.url}")
        app.echo("Ctrl-C or SIGTERM stops the service and its agent.")

    stopped_by = run_serve(opened, options, app.progress(quiet), ready)
    if stopped_by is not None:
        app.progress(quiet).info(f"Stopped ({signal.Signals(stopped_by).name}); nothing is left running.")


def register(cli: typer.Typer) -> None:
    cli.command("serve")(command(serve))
