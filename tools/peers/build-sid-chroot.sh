#!/bin/sh
# Build (once) a Debian unstable minbase chroot holding qemu-system-x86 and qemu-utils (QEMU 11.x:
# qemu-system-x86_64 and qemu-storage-daemon), cached outside the work tree. Idempotent: exits
# quickly when the chroot already has both; an older chroot without qemu-utils gets it added.
# Must run as root. Usage: build-sid-chroot.sh [DIR]  (default /var/cache/vhostkit/sid-chroot)
set -eu
DIR="${1:-${VHOSTKIT_SID_CHROOT:-/var/cache/vhostkit/sid-chroot}}"
if [ -x "$DIR/usr/bin/qemu-system-x86_64" ] && [ -x "$DIR/usr/bin/qemu-storage-daemon" ]; then
  echo "sid chroot ready: $DIR"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "build-sid-chroot.sh: must run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap
fi
# Use the mirror the host's apt uses (first deb.debian.org-style URI that is not -security).
MIRROR="$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -v security | grep -o -E 'https?://[^ ]*/debian/?' | head -n 1)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$DIR"
if [ ! -x "$DIR/usr/bin/apt-get" ]; then
  debootstrap --variant=minbase unstable "$DIR" "$MIRROR"
fi
# The unstable Release file may be past Valid-Until; signatures are still checked.
mkdir -p "$DIR/etc/apt/apt.conf.d"
echo 'Acquire::Check-Valid-Until "false";' > "$DIR/etc/apt/apt.conf.d/99vhostkit-no-valid-until"
cleanup() {
  umount "$DIR/proc" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
mount -t proc proc "$DIR/proc"
chroot "$DIR" apt-get update -qq
chroot "$DIR" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils
chroot "$DIR" apt-get clean
chroot "$DIR" qemu-system-x86_64 --version | head -n 1
