"""mlpack's telemetry agent: a sidecar that turns inference events into OpenTelemetry.

`mlpack_agent.client` is what a service imports (standard library only); the rest runs
in the agent process (`mlpack-agent --config agent.json`).
"""

__version__ = "0.1.0"
