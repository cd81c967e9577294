"""`mlpack-agent`: run the telemetry agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import __version__
from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlpack-agent",
        description="Receive inference events from an mlpack service and export OpenTelemetry metrics and logs.",
    )
    parser.add_argument("--config", help="agent.json (from the artifact's agent/ folder); env vars override it")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--version", action="version", version=f"mlpack-agent {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mlpack-agent: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("mlpack-agent: configuration is valid")
        return 0

    # A short GIL switch interval lets the socket reader run promptly while recording.
    sys.setswitchinterval(0.001)
    from .agent import Agent  # OpenTelemetry is imported only once there is work to do

    agent = Agent(config)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        agent.start()
    except OSError as exc:
        print(f"mlpack-agent: error: cannot start: {exc}", file=sys.stderr)
        return 1
    done.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
