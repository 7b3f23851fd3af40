#!/usr/bin/env bash
# Debian packages the test suite runs against (root + apt only; elsewhere it says what is skipped):
# - chromium: the report-rendering test;
# - Mesa >= 25's Vulkan drivers (lavapipe): the adapter of LiteRT's GPU accelerator on a machine
#   without a GPU. Debian 12's own Mesa 22.3 lacks what Dawn needs; bookworm-backports has 25.x.
set -u
apt_ok() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null; }

# Usage: install_test_deps.sh [vulkan]   (vulkan: only the GPU accelerator's driver, for `make run`)
missing=()
[ "${1:-}" = vulkan ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
case "$(mesa_version)" in 2[5-9].*|[3-9][0-9].*) ;; *) missing+=(mesa-vulkan-drivers) ;; esac
[ ${#missing[@]} = 0 ] && exit 0
if ! apt_ok; then
  echo "not root or no apt-get: ${missing[*]} not installed; the tests that need them will be skipped"
  exit 0
fi
. /etc/os-release 2>/dev/null || true
target=()
if [[ " ${missing[*]} " == *" mesa-vulkan-drivers "* ]] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  list=/etc/apt/sources.list.d/meshport-bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n%s\n' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$list"
  fi
  target=(-t bookworm-backports)
fi
apt-get update -qq >/dev/null 2>&1
for pkg in "${missing[@]}"; do
  if [ "$pkg" = mesa-vulkan-drivers ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers >/dev/null 2>&1 \
      || echo "could not install Mesa's Vulkan drivers: the GPU-accelerator tests will be skipped"
  else
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
      || echo "could not install $pkg: the tests that need it will be skipped"
  fi
done
exit 0
