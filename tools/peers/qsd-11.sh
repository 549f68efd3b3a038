#!/bin/sh
# QEMU 11.1's qemu-storage-daemon (Debian unstable, package qemu-utils), fetched by fetch.sh; see run.sh.
exec sh "$(dirname "$0")/run.sh" sid qemu-storage-daemon "$@"
