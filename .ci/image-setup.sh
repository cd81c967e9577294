#!/usr/bin/env bash
# Tools for the container image tests (tests/test_image*.py, tests/test_push*.py):
# daemonless builds with buildah, podman (its Docker API stands in for a Docker daemon in
# tests/test_image_docker.py), a local OCI registry, qemu for arm64 images, and
# debootstrap for the offline stand-in base images. Idempotent and quick when all is in
# place; installing needs root (or sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
# shellcheck source=.ci/packages.sh
source .ci/packages.sh

need_packages buildah podman runc skopeo docker-registry qemu-user-static binfmt-support debootstrap \
  ca-certificates

# docker-registry's own service is not needed: the tests start their registry on a free port.
if [[ "$NEWLY_INSTALLED" == *docker-registry* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# write_config FILE: the text on stdin, written only when the file differs (no root needed then).
write_config() {
  local text
  text="$(cat)"
  if [ "$(cat "$1" 2>/dev/null)" != "$text" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$text" > "$1"
  fi
}

# runc works here (crun fails on this host's cgroup setup); RUN steps get no network,
# so builds cannot depend on anything outside their context.
write_config /etc/containers/containers.conf <<'CONF'
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF

# Public base images by their short names resolve on Docker Hub, as with docker.
# Registries on 127.0.0.1 are used over plain HTTP (mlpack passes --tls-verify=false
# for loopback registries, as docker does for 127.0.0.0/8).
write_config /etc/containers/registries.conf <<'CONF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

[[registry]]
location = "localhost:5000"
insecure = true

[[registry]]
location = "127.0.0.1:5000"
insecure = true
CONF

# arm64 images run under qemu through binfmt_misc (the F flag lets chroots use it).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || echo "image-setup: cannot mount binfmt_misc; arm64 image tests will skip (fail with CI=true)" >&2
fi
if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
