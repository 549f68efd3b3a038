#!/bin/sh
# QEMU 7.2's qemu-system-x86_64 (Debian 12), fetched by fetch.sh; see run.sh.
exec sh "$(dirname "$0")/run.sh" bookworm qemu-system-x86_64 "$@"
