/**
 * QEMU command lines shared by the interop tests.
 */

/**
 * A TCG q35 machine whose RAM is a shared memfd of `memMiB` (what a vhost-user back-end needs to
 * map guest memory) and one `vhost-user-blk-pci` on `socket`; `deviceExtra` is appended to the
 * device's properties (e.g. `,bootindex=1`).
 */
export function vhostUserBlkMachine(socket: string, memMiB: number, deviceExtra = ""): string[] {
  return [
    "-machine", "q35,accel=tcg,memory-backend=mem",
    "-m", `${memMiB}M`,
    "-object", `memory-backend-memfd,id=mem,size=${memMiB}M,share=on`,
    "-chardev", `socket,id=blk0,path=${socket}`,
    "-device", `vhost-user-blk-pci,chardev=blk0,num-queues=1${deviceExtra}`,
  ];
}
