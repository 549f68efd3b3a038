#!/bin/sh
# Install QEMU 7.2 from Debian 12 (bookworm): qemu-system-x86_64, qemu-storage-daemon, qemu-img.
# Idempotent: a quick no-op when the binaries are already present. Must run as root.
# In bookworm qemu-storage-daemon ships in qemu-system-common (pulled in by qemu-system-x86).
set -eu
PKGS="qemu-system-x86 qemu-system-common qemu-utils"
have() { command -v "$1" >/dev/null 2>&1; }
if have qemu-storage-daemon && have qemu-system-x86_64 && have qemu-img; then
  qemu-storage-daemon --version | head -n 1
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-qemu-7.2.sh: must run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $PKGS
qemu-storage-daemon --version | head -n 1
qemu-system-x86_64 --version | head -n 1
