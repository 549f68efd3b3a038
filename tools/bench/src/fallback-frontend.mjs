// Front-end side of the cross-process MEM_READ figure of the fallback benchmark; runtime-neutral.
// Serves vhostkit MEM_READ/MEM_WRITE on the back-end channel it inherits as fd 3, with the
// front-end's BackendRequestHandler, from the same guest as fallback.ts builds: 4 MiB of RAM and
// device A's shmid 1 at 4 GiB with a 1 MiB memfd blob mapped at offset 0. Runs until the channel closes.
import { BackendRequestHandler } from "@vhostkit/frontend";
import { DeviceSharedMemory, GuestAddressSpace, GuestRam, SHMEM_MAP_FLAG_RW, guestAddress } from "@vhostkit/regions";
import { Endpoint, OwnedFd } from "@vhostkit/transport";
import { ftruncate, memfdCreate, MFD } from "@vhostkit/transport/sys";
import { MEM_RW_MAX_PAYLOAD, UPSTREAM } from "@vhostkit/wire";
const MiB = 1n << 20n;
const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n * MiB }] });
const shm = new DeviceSharedMemory({ sizes: new Map([[1, 2n * MiB]]), guestPhysAddr: guestAddress(1n << 32n) });
const blob = memfdCreate("bench-blob", MFD.CLOEXEC);
ftruncate(blob, MiB);
shm.map(1, 0n, MiB, blob, 0n, SHMEM_MAP_FLAG_RW);
const space = new GuestAddressSpace(ram, [shm]);
const handler = new BackendRequestHandler(new Endpoint(new OwnedFd(3), { maxPayload: MEM_RW_MAX_PAYLOAD }), { dialect: UPSTREAM, replyAck: true, backendSendFd: false, memAccess: space });
await handler.start();
