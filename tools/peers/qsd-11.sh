#!/bin/sh
# Run qemu-storage-daemon (QEMU 11.x, Debian unstable, package qemu-utils) from the chroot built by
# build-sid-chroot.sh. Usage: qsd-11.sh [qemu-storage-daemon args...]
# See sid-exec.sh for the mounts (private namespace, /tmp and /dev/shm shared with the host).
exec sh "$(dirname "$0")/sid-exec.sh" qemu-storage-daemon "$@"
