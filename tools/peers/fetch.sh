#!/bin/sh
# Fetch the third-party vhost-user peers from Debian's package mirror into a per-user cache, without
# root: apt resolves the packages' dependency closure against a private, empty package database,
# downloads the .debs, and dpkg-deb unpacks them into a root of their own. run.sh starts a program
# of that root through the root's own dynamic loader, so its C library and every shared library
# come from the same Debian release, whatever the host runs. No chroot, no namespaces, no setuid.
#
# Usage: fetch.sh [--refresh] [SET...]     (default: every set)
#   bookworm  QEMU 7.2 (Debian 12): qemu-system-x86_64, qemu-storage-daemon, qemu-img, and its
#             C virtiofsd and vhost-user-gpu
#   sid       QEMU 11.1 (Debian unstable): qemu-system-x86_64, qemu-storage-daemon; virtiofsd 1.14
#             (Rust) and vhost-device-vsock 0.3
#   guest     a Linux guest (Debian 12): its kernel and modules, and a static busybox (guest.mjs
#             builds an initramfs from them)
#   dpdk      DPDK 22.11 (Debian 12): dpdk-testpmd with the vhost-user and virtio-user drivers
# A set that is already fetched with the same package list is a quick no-op (no network) unless
# --refresh is given.
#
# Cache: $VHOSTKIT_CACHE/peers/SET, VHOSTKIT_CACHE defaulting to ${XDG_CACHE_HOME:-$HOME/.cache}/vhostkit.
# Mirror: $VHOSTKIT_DEBIAN_MIRROR, else the first Debian mirror in the host's apt sources, else
# http://deb.debian.org/debian. Signatures are checked with the host's Debian archive keys.
# An unreachable mirror fails within seconds, with one line saying so.
set -eu

CACHE="${VHOSTKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhostkit}/peers"
REFRESH=0
SETS=""
for a in "$@"; do
  case "$a" in
    --refresh) REFRESH=1 ;;
    bookworm | sid | guest | dpdk) SETS="$SETS $a" ;;
    *) echo "fetch.sh: unknown set '$a' (known: bookworm sid guest dpdk)" >&2; exit 2 ;;
  esac
done
[ -n "$SETS" ] || SETS="bookworm sid guest dpdk"

host_mirror() {
  grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v security | grep -o -E 'https?://[^ ]*/debian/?' | head -n 1 | sed 's,/*$,,'
}
MIRROR="${VHOSTKIT_DEBIAN_MIRROR:-$(host_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"
SECURITY_MIRROR="${VHOSTKIT_DEBIAN_SECURITY_MIRROR:-${MIRROR}-security}"

# The packages of each set, and its apt sources.
packages() {
  case "$1" in
    bookworm) echo "qemu-system-x86 qemu-system-common qemu-utils libvirglrenderer1 libgbm1 libepoxy0" ;;
    sid) echo "qemu-system-x86 qemu-utils virtiofsd vhost-device-vsock" ;;
    guest) echo "linux-image-amd64 busybox-static" ;;
    dpdk) echo "dpdk librte-net-vhost23 librte-net-virtio23 librte-mempool-ring23 librte-cmdline23 librte-crypto-scheduler23 librte-reorder23 librte-bitratestats23 librte-metrics23 librte-bpf23 librte-gro23 librte-gso23 librte-latencystats23 librte-pdump23 librte-net-bnxt23 librte-net-i40e23 librte-net-ixgbe23 librte-net-ice23 librte-common-iavf23 librte-bus-dpaa23 librte-common-dpaax23 librte-eventdev23 librte-timer23 librte-mempool-dpaa23 librte-net-dpaa23 librte-net-bond23 librte-net-mlx5-23 librte-common-mlx5-23 librte-bus-auxiliary23" ;;
  esac
}
# Packages taken without their dependencies: Debian 12's vhost-user-gpu ships in qemu-system-gui,
# whose GTK/SDL/audio closure it does not use; the libraries it links are in packages() instead.
without_deps() {
  case "$1" in
    bookworm) echo "qemu-system-gui" ;;
    dpdk) echo "dpdk-dev" ;;
  esac
}
sources() {
  case "$1" in
    bookworm | guest | dpdk)
      echo "deb $MIRROR bookworm main"
      echo "deb $MIRROR bookworm-updates main"
      echo "deb $SECURITY_MIRROR bookworm-security main" ;;
    sid) echo "deb $MIRROR unstable main" ;;
  esac
}

fetch_set() {
  set_name="$1"
  dir="$CACHE/$set_name"
  want="packages: $(packages "$set_name")$(without_deps "$set_name" | sed 's/^./ (no deps: &/; s/.$/&)/')"
  if [ "$REFRESH" = 0 ] && [ -f "$dir/ready" ] && [ "$(sed -n 3p "$dir/ready")" = "$want" ]; then
    echo "peers $set_name: ready in $dir ($(head -n 1 "$dir/ready"))"
    return 0
  fi
  a="$dir/apt"
  rm -rf "$a" "$dir/root.new"
  mkdir -p "$a/lists/partial" "$a/archives/partial" "$a/sources.list.d" "$a/preferences.d"
  : > "$a/status"
  sources "$set_name" > "$a/sources.list"
  # apt runs as the calling user (no _apt sandbox), with nothing of the host's package state.
  apt_opts="-q -o Dir::State::Lists=$a/lists -o Dir::State::status=$a/status
    -o Dir::Cache=$a -o Dir::Cache::Archives=$a/archives -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Dir::Etc::sourcelist=$a/sources.list -o Dir::Etc::sourceparts=$a/sources.list.d
    -o Dir::Etc::preferences=$a/preferences -o Dir::Etc::preferencesparts=$a/preferences.d
    -o APT::Sandbox::User=$(id -un) -o Debug::NoLocking=true -o APT::Install-Recommends=false
    -o Acquire::Check-Valid-Until=false -o Acquire::Retries=1 -o Acquire::http::Timeout=20
    -o Acquire::Languages=none"
  # shellcheck disable=SC2086
  if ! apt-get $apt_opts update > "$a/update.log" 2>&1 || grep -q -E '^(W|E): ' "$a/update.log"; then
    echo "fetch.sh: cannot read the Debian package lists for '$set_name' from $MIRROR (see $a/update.log; set VHOSTKIT_DEBIAN_MIRROR to another mirror): $(grep -m 1 -A 1 -E '^(W|E|Err):' "$a/update.log" | tr -s ' \n' ' ' || true)" >&2
    return 1
  fi
  # shellcheck disable=SC2086
  if ! apt-get $apt_opts install -y --download-only $(packages "$set_name") > "$a/install.log" 2>&1; then
    echo "fetch.sh: cannot download the packages of '$set_name' (see $a/install.log): $(grep -m 1 -E '^(E|Err):' "$a/install.log" || true)" >&2
    return 1
  fi
  nodeps="$(without_deps "$set_name")"
  # shellcheck disable=SC2086
  if [ -n "$nodeps" ] && ! (cd "$a/archives" && apt-get $apt_opts download $nodeps) > "$a/download.log" 2>&1; then
    echo "fetch.sh: cannot download $nodeps for '$set_name' (see $a/download.log)" >&2
    return 1
  fi
  mkdir -p "$dir/root.new"
  for deb in "$a"/archives/*.deb; do
    dpkg-deb -x "$deb" "$dir/root.new"
  done
  # Absolute symlinks would point into the host's own /usr: make them point inside the root.
  find "$dir/root.new" -type l | while read -r link; do
    target="$(readlink "$link")"
    case "$target" in
      /*) ln -sfn "$dir/root$target" "$link" ;;
    esac
  done
  versions="$(cd "$a/archives" && ls -- *.deb | sed -n -E 's/^(qemu-system-x86|qemu-utils|virtiofsd|vhost-device-vsock|linux-image-[0-9][^_]*|busybox-static|dpdk)_([^_]*)_.*/\1 \2/p' | sed 's/%3a/:/g' | tr '\n' ' ')"
  rm -rf "$dir/root" "$a/archives" "$a/lists"
  mv "$dir/root.new" "$dir/root"
  printf '%s\n%s\n%s\n' "$versions" "$(date -u +%Y-%m-%dT%H:%M:%SZ) from $MIRROR" "$want" > "$dir/ready"
  echo "peers $set_name: fetched into $dir ($versions)"
}

mkdir -p "$CACHE"
status=0
for s in $SETS; do
  # One fetch of a set at a time (two test runs may start together).
  exec 9> "$CACHE/$s.lock"
  if command -v flock > /dev/null 2>&1; then flock 9; fi
  fetch_set "$s" || status=1
  exec 9>&-
done
exit "$status"
