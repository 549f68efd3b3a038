#!/bin/sh
# QEMU 11.1's qemu-system-x86_64 (Debian unstable), fetched by fetch.sh; see run.sh.
# Usage: qemu-11.sh [qemu args...]   e.g. qemu-11.sh --version ; qemu-11.sh -device help
exec sh "$(dirname "$0")/run.sh" sid qemu-system-x86_64 "$@"
