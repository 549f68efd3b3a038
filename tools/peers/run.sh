#!/bin/sh
# Run a program of a peer set fetched by fetch.sh: run.sh SET PROGRAM [args...]
#   e.g. run.sh sid qemu-system-x86_64 --version ; run.sh bookworm qemu-storage-daemon --help
#   run.sh dpdk dpdk-testpmd --no-huge -m 1024 --no-shconf --no-pci --vdev ... -- -a ...
# The program starts through its own root's dynamic loader with that root's libraries, so it needs
# no root, no chroot and nothing installed on the host. QEMU system emulators get `-L` (firmware
# and option ROMs) and QEMU_MODULE_DIR pointing into the same root. Every step execs, so the
# caller's pid is the program's. Not fetched: exits 127 at once with one line saying what to run.
set -eu
SET="${1:?usage: run.sh SET PROGRAM [args...]}"
PROGRAM="${2:?usage: run.sh SET PROGRAM [args...]}"
shift 2
DIR="${VHOSTKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhostkit}/peers/$SET"
R="$DIR/root"
# Programs live in /usr/bin, or (Debian 12's C virtiofsd, vhost-user-gpu) in /usr/lib/qemu.
BIN=""
for d in /usr/bin /usr/lib/qemu /usr/libexec; do
  if [ -x "$R$d/$PROGRAM" ]; then BIN="$R$d/$PROGRAM"; break; fi
done
if [ ! -f "$DIR/ready" ] || [ -z "$BIN" ]; then
  echo "run.sh: $PROGRAM of peer set '$SET' is not fetched into $DIR: run sh tools/peers/fetch.sh $SET" >&2
  exit 127
fi
case "$(uname -m)" in
  x86_64) TRIPLET=x86_64-linux-gnu LOADER=ld-linux-x86-64.so.2 ;;
  aarch64) TRIPLET=aarch64-linux-gnu LOADER=ld-linux-aarch64.so.1 ;;
  *) echo "run.sh: no loader known for $(uname -m)" >&2; exit 127 ;;
esac
# Debian 12 ships libraries under /lib, newer releases under /usr/lib: search both.
LIBS="$R/usr/lib/$TRIPLET:$R/lib/$TRIPLET:$R/usr/lib:$R/lib"
LD="$R/usr/lib/$TRIPLET/$LOADER"
[ -e "$LD" ] || LD="$R/lib/$TRIPLET/$LOADER"
case "$PROGRAM" in
  qemu-system-*)
    export QEMU_MODULE_DIR="$R/usr/lib/$TRIPLET/qemu"
    # Debian's QEMU looks for firmware in its data dir and then in these packages' own dirs
    # (its --firmwarepath); -L puts the root's copies first.
    for d in /usr/lib/ipxe/qemu /usr/share/seabios /usr/share/qemu; do
      [ -d "$R$d" ] && set -- -L "$R$d" "$@"
    done
    exec "$LD" --library-path "$LIBS" "$BIN" "$@" ;;
  dpdk-*)
    # DPDK's EAL loads its drivers (vhost, virtio-user, mempool ring) as plugins from a directory
    # compiled in as an absolute host path; -d names the root's copy. Without hugepages (none here,
    # none needed): --no-huge -m 1024 --no-shconf --no-pci, as root and as an ordinary user.
    exec "$LD" --library-path "$LIBS" "$BIN" -d "$R/usr/lib/$TRIPLET/dpdk/pmds-23.0" "$@" ;;
  *)
    exec "$LD" --library-path "$LIBS" "$BIN" "$@" ;;
esac
