#!/bin/sh
# Run qemu-system-x86_64 (QEMU 11.x, Debian unstable) from the chroot built by build-sid-chroot.sh.
# Usage: qemu-11.sh [qemu args...]   e.g. qemu-11.sh --version ; qemu-11.sh -device help
# /tmp, /dev, /dev/shm, /proc and /sys are bind-mounted into the chroot so unix sockets and shared
# memory are shared with the host. Mounts are made in a private mount namespace (unshare -m), so
# they vanish when qemu exits, whatever the exit path; the host mount table is never touched.
# Must run as root. Env: VHOSTKIT_SID_CHROOT overrides the chroot dir.
set -eu
DIR="${VHOSTKIT_SID_CHROOT:-/var/cache/vhostkit/sid-chroot}"
if [ ! -x "$DIR/usr/bin/qemu-system-x86_64" ]; then
  echo "qemu-11.sh: no chroot at $DIR; run tools/peers/build-sid-chroot.sh first" >&2
  exit 1
fi
export VHOSTKIT_SID_CHROOT="$DIR"
exec unshare --mount --propagation private -- sh -c '
  set -eu
  D="$VHOSTKIT_SID_CHROOT"
  for m in /proc /sys /dev /dev/shm /tmp; do
    mkdir -p "$D$m"
    mount --rbind "$m" "$D$m"
  done
  exec chroot "$D" /usr/bin/qemu-system-x86_64 "$@"
' qemu-11 "$@"
