#!/usr/bin/env bash
# Run a command of this checkout against one Debian QGIS, set up as the tests are (venv, plugin link, env.sh):
#   bash scripts/on_qgis.sh 3.22 COMMAND...   this machine's QGIS (Debian 12)
#   bash scripts/on_qgis.sh 3.40 COMMAND...   Debian 13 (trixie): Python 3.13, numpy 2, GDAL 3.10
#   bash scripts/on_qgis.sh 3.44 COMMAND...   Debian 13 with trixie-backports: the long-term release
# e.g. `bash scripts/on_qgis.sh 3.44 python bench/bench_kmeans.py`. For 3.40 and 3.44 a Debian root is built once
# with debootstrap from Debian's own packages and cached under $MAP_SEGMENTER_ROOTS (default
# /var/cache/map-segmenter); needs root (as CI runs) and about 2 GB per version. The command runs there in a copy of
# this checkout (git folder and uncommitted changes included) with its own venv; Python 3.13 gets no torch
# (scripts/setup.sh NO_TORCH=1: no CPU wheel for it here), so the training tests run on the host's Python only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:-}"
shift || true
[ $# -gt 0 ] || { echo "usage: bash scripts/on_qgis.sh 3.22|3.40|3.44 COMMAND..." >&2; exit 2; }

case "$VERSION" in
  3.22) bash "$ROOT/scripts/setup.sh"; source "$ROOT/scripts/env.sh"; cd "$ROOT"; MAP_SEGMENTER_SET_UP=1 exec "$@" ;;
  3.40) SUITE=trixie; BACKPORTS=0 ;;
  3.44) SUITE=trixie; BACKPORTS=1 ;;
  *) echo "usage: bash scripts/on_qgis.sh 3.22|3.40|3.44 COMMAND..." >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "Building and entering a Debian root needs root (debootstrap, chroot, mount)." >&2; exit 1; }

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv xvfb xauth pyqt5-dev-tools \
qttools5-dev-tools ca-certificates git"
CACHE="${MAP_SEGMENTER_ROOTS:-/var/cache/map-segmenter}"
DIR="$CACHE/qgis-$VERSION"
# The root is rebuilt when its recipe changes (this script's packages, suite, backports).
RECIPE="$SUITE backports=$BACKPORTS $MIRROR $PACKAGES v1"

enter() {  # enter DIR COMMAND...: run in the root with /proc, /dev and /sys, in a mount namespace of its own (its
  # mounts vanish with it, whatever happens to this script)
  local dir="$1"; shift
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  # the host's certificates (a proxy's own authority among them, where the network has one) for apt and pip
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$dir/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/host-ca-certificates.crt"
  fi
  unshare --mount --propagation private -- bash -c '
    dir="$1"; shift
    mount -t proc proc "$dir/proc"
    mount --rbind /dev "$dir/dev"
    mount --rbind /sys "$dir/sys"
    mount -t tmpfs -o size=8g tmpfs "$dir/dev/shm"
    exec chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      CI="${CI:-}" TERM="${TERM:-dumb}" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
      ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
      $( [ -f "$dir/etc/ssl/certs/host-ca-certificates.crt" ] && echo PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
        SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-certificates.crt ) \
      "$@"' enter "$dir" "$@"
}

build_root() {
  local tmp="$DIR.building"
  # a half-built root from an interrupted run: no mounts can remain (they lived in a namespace of their own)
  rm -rf --one-file-system "$tmp"
  mkdir -p "$CACHE"
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  echo "Building a Debian $SUITE root for QGIS $VERSION in $DIR (once; a few minutes)..." >&2
  debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap-$VERSION.log" 2>&1 || {
    tail -20 "$CACHE/debootstrap-$VERSION.log" >&2; exit 1; }
  local target=""
  if [ "$BACKPORTS" = 1 ]; then
    echo "deb $MIRROR $SUITE-backports main" >"$tmp/etc/apt/sources.list.d/backports.list"
    target="-t $SUITE-backports"
  fi
  enter "$tmp" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $target $PACKAGES >/var/log/map-segmenter-install.log 2>&1 || { tail -30 /var/log/map-segmenter-install.log; exit 1; }
    apt-get clean" >&2
  echo "$RECIPE" >"$tmp/.map-segmenter-root"
  rm -rf --one-file-system "$DIR"
  mv "$tmp" "$DIR"
}

if [ ! -f "$DIR/.map-segmenter-root" ] || [ "$(cat "$DIR/.map-segmenter-root")" != "$RECIPE" ]; then
  build_root
fi

# A copy of this checkout, its git folder and uncommitted changes included (its own .venv and .build live in the
# root, beside the host's).
WORK="$DIR/work/map_segmenter"
mkdir -p "$WORK"
find "$WORK" -mindepth 1 -maxdepth 1 ! -name .venv ! -name .build -exec rm -rf --one-file-system {} +
tar -C "$ROOT" --exclude=./.venv --exclude=./.build --exclude=./out --exclude=./dist --exclude=./bench/out \
  --exclude='__pycache__' --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$WORK" -xf -

echo "QGIS $(enter "$DIR" dpkg-query -W -f='${Version}' qgis) in $DIR (Debian $SUITE$([ "$BACKPORTS" = 1 ] && echo -backports)), \
$(enter "$DIR" python3 --version)" >&2
enter "$DIR" bash -c 'cd /work/map_segmenter && export NO_TORCH=1 && bash scripts/setup.sh >&2 && source scripts/env.sh \
  && MAP_SEGMENTER_SET_UP=1 exec "$@"' \
  run "$@"
