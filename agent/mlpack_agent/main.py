"""`mlpack-agent`: run the telemetry agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import __version__
from .config import ConfigError, load_config
from .folders import UnsafeFolder


def _reexec_without_docstrings(argv: list[str]) -> None:
    """Run the agent under -OO (docstrings of the OpenTelemetry and protobuf modules are
    about 1 MiB of the agent's ~35 MiB) and with few malloc arenas. Skipped when already
    optimized or told not to (MLPACK_AGENT_NO_REEXEC=1)."""
    if sys.flags.optimize >= 2 or os.environ.get("MLPACK_AGENT_NO_REEXEC"):
        return
    os.environ["MLPACK_AGENT_NO_REEXEC"] = "1"
    # Few malloc arenas: the reader thread allocates datagrams the recorder thread frees,
    # and one arena per thread would keep that churn resident several times over.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    try:
        os.execv(sys.executable, [sys.executable, "-OO", "-m", "mlpack_agent.main", *argv])
    except OSError:
        return  # run as we are


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlpack-agent",
        description="Receive inference events from an mlpack service and export OpenTelemetry metrics and logs.",
    )
    parser.add_argument("--config", help="agent.json (from the artifact's agent/ folder); env vars override it")
    parser.add_argument(
        "--lambda-extension", metavar="NAME", nargs="?", const="mlpack-agent",
        help="run as an AWS Lambda extension called NAME (its file name in /opt/extensions)",
    )
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

    _reexec_without_docstrings(sys.argv[1:] if argv is None else argv)
    # The agent reads process health from /proc itself; keep OpenTelemetry's resource
    # detector from importing psutil (another MiB) when some other package installed it.
    sys.modules.setdefault("psutil", None)
    # A short GIL switch interval lets the socket reader run promptly while recording.
    sys.setswitchinterval(0.001)
    try:
        if args.lambda_extension:
            from . import lambda_extension

            # Register first (standard library only): the Init phase waits for it.
            registration = lambda_extension.register(args.lambda_extension)
        from .agent import Agent  # OpenTelemetry is imported only once there is work to do

        agent = Agent(config)
        agent.start()
    except UnsafeFolder as exc:  # says the fix itself
        print(f"mlpack-agent: error: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # socket path, buffer folder, port in use, certificates, Extensions API
        print(f"mlpack-agent: error: cannot start: {exc}; check the paths and port in the config",
              file=sys.stderr)
        return 1
    if args.lambda_extension:
        lambda_extension.serve(agent, *registration)
        return 0
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
