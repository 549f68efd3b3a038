/**
 * Front-end side of the cross-process MEM_READ figure of the fallback benchmark (run by Bun):
 * serves vhostkit MEM_READ/MEM_WRITE on the back-end channel it inherits as fd 3, with the
 * front-end's BackendRequestHandler (revision 2, the shared data buffer, served too), from the benchmark's guest (fallback-guest.ts). Runs until
 * the channel closes.
 */
import { BackendRequestHandler, sharedMemoryPort } from "@vhostkit/frontend";
import { Endpoint, OwnedFd } from "@vhostkit/transport";
import { MEM_RW_MAX_PAYLOAD, UPSTREAM } from "@vhostkit/wire";
import { frontEndGuest } from "./fallback-guest.js";

const { space } = frontEndGuest();
const handler = new BackendRequestHandler(new Endpoint(new OwnedFd(3), { maxPayload: MEM_RW_MAX_PAYLOAD }), {
  dialect: UPSTREAM,
  replyAck: true,
  backendSendFd: false,
  memRwBuffer: true,
  sharedMemory: sharedMemoryPort({ memory: space }),
});
await handler.start();
