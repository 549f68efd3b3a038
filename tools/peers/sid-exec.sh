#!/bin/sh
# Run a program of the Debian unstable chroot built by build-sid-chroot.sh (QEMU 11.x).
# Usage: sid-exec.sh PROGRAM [args...]   e.g. sid-exec.sh qemu-system-x86_64 --version
# /tmp, /dev, /dev/shm, /proc and /sys are bind-mounted into the chroot so unix sockets and shared
# memory are shared with the host. Mounts are made in a private mount namespace (unshare -m), so
# they vanish when the program exits, whatever the exit path; the host mount table is never touched.
# Every step execs, so the caller's pid is the program's. Must run as root.
# Env: VHOSTKIT_SID_CHROOT overrides the chroot dir.
set -eu
DIR="${VHOSTKIT_SID_CHROOT:-/var/cache/vhostkit/sid-chroot}"
PROGRAM="${1:?usage: sid-exec.sh PROGRAM [args...]}"
shift
if [ ! -x "$DIR/usr/bin/$PROGRAM" ]; then
  echo "sid-exec.sh: no $PROGRAM in the chroot at $DIR; run tools/peers/build-sid-chroot.sh first" >&2
  exit 1
fi
export VHOSTKIT_SID_CHROOT="$DIR" VHOSTKIT_SID_PROGRAM="$PROGRAM"
exec unshare --mount --propagation private -- sh -c '
  set -eu
  D="$VHOSTKIT_SID_CHROOT"
  for m in /proc /sys /dev /dev/shm /tmp; do
    mkdir -p "$D$m"
    mount --rbind "$m" "$D$m"
  done
  exec chroot "$D" "/usr/bin/$VHOSTKIT_SID_PROGRAM" "$@"
' sid-exec "$@"
