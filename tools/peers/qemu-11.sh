#!/bin/sh
# Run qemu-system-x86_64 (QEMU 11.x, Debian unstable) from the chroot built by build-sid-chroot.sh.
# Usage: qemu-11.sh [qemu args...]   e.g. qemu-11.sh --version ; qemu-11.sh -device help
# See sid-exec.sh for the mounts (private namespace, /tmp and /dev/shm shared with the host).
exec sh "$(dirname "$0")/sid-exec.sh" qemu-system-x86_64 "$@"
