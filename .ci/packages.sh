# Sourced by the .ci scripts: install Debian packages that are not installed yet.
#   need_packages PKG...   apt-get install the missing ones (as root, or through sudo);
#                          sets NEWLY_INSTALLED to what it installed. Quick when none is.

NEWLY_INSTALLED="${NEWLY_INSTALLED:-}"

need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo)
    else
      echo "setup: needs ${missing[*]}: run as root: apt-get install ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "== installing ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  NEWLY_INSTALLED="$NEWLY_INSTALLED ${missing[*]}"
}
