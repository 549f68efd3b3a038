/**
 * QEMU command lines shared by the interop tests.
 */

/**
 * A TCG q35 machine whose RAM is a shared memfd of `memMiB` (what a vhost-user back-end needs to
 * map guest memory) and one `vhost-user-blk-pci` on `socket`; `deviceExtra` is appended to the
 * device's properties (e.g. `,bootindex=1`), `chardevExtra` to the socket chardev's (e.g.
 * `,reconnect=1`: QEMU connects again when the back-end goes away).
 */
export function vhostUserBlkMachine(socket: string, memMiB: number, deviceExtra = "", chardevExtra = ""): string[] {
  return [
    ...memfdMachine(memMiB),
    "-chardev",
    `socket,id=blk0,path=${socket}${chardevExtra}`,
    "-device",
    `vhost-user-blk-pci,chardev=blk0,num-queues=1${deviceExtra}`,
  ];
}

/**
 * A TCG q35 machine whose RAM is a shared memfd of `memMiB` and the GPU sample (or any back-end on
 * `socket`) as virtio-gpu: `vhost-user-test-device-pci,virtio-id=16,num_vqs=2,config_size=20`;
 * `deviceExtra` is appended to the device's properties (e.g. `,id=gpu0`).
 */
export function vhostUserGpuMachine(socket: string, memMiB: number, deviceExtra = ""): string[] {
  return [
    ...memfdMachine(memMiB),
    "-chardev",
    `socket,id=gpu0,path=${socket}`,
    "-device",
    `vhost-user-test-device-pci,chardev=gpu0,virtio-id=16,num_vqs=2,config_size=20${deviceExtra}`,
  ];
}

/** A TCG q35 machine whose RAM is a shared memfd of `memMiB`, which a vhost-user back-end can map. */
function memfdMachine(memMiB: number): string[] {
  return ["-machine", "q35,accel=tcg,memory-backend=mem", "-m", `${memMiB}M`, "-object", `memory-backend-memfd,id=mem,size=${memMiB}M,share=on`];
}
