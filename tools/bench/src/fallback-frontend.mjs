// Front-end side of the cross-process MEM_READ figure of the fallback benchmark; runtime-neutral.
// Serves vhostkit MEM_READ/MEM_WRITE on the back-end channel it inherits as fd 3, from 4 MiB of
// guest RAM (memfd), with the front-end's BackendRequestHandler. Runs until the channel closes.
import { BackendRequestHandler } from "@vhostkit/frontend";
import { GuestAddressSpace, GuestRam } from "@vhostkit/regions";
import { Endpoint, OwnedFd } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, UPSTREAM } from "@vhostkit/wire";
const ram = new GuestRam({ blocks: [{ guestPhysAddr: 0n, size: 4n << 20n }] });
const space = new GuestAddressSpace(ram);
const handler = new BackendRequestHandler(new Endpoint(new OwnedFd(3), { maxPayload: MEM_RW_MAX_PAYLOAD }), { dialect: UPSTREAM, replyAck: true, backendSendFd: false, memAccess: space });
await handler.start();
