/**
 * Handing one driven ring to a back-end: the requests of docs/protocol.md#vring-set-up-messages, the
 * same on a device's first start and when a restarted back-end takes the ring over.
 * @module
 */
import type { GuestRam } from "@vhostkit/regions";
import { vringAddr } from "./dirty-log.js";
import type { DriverQueue } from "./driver-queue.js";
import type { Frontend } from "./frontend.js";

/**
 * SET_VRING_NUM, SET_VRING_BASE (`base`), SET_VRING_ADDR (synthetic user addresses of the rings in
 * `ram`; VHOST_VRING_F_LOG when `logging`), SET_VRING_CALL and SET_VRING_KICK (the queue's eventfds, borrowed) for `q`.
 * @throws FrontendError as {@link Frontend.ack}.
 * @internal
 */
export async function sendRing(fe: Frontend, ram: GuestRam, q: DriverQueue, base: number, logging = false): Promise<void> {
  await fe.setVringNum(q.index, q.size);
  await fe.setVringBase(q.index, base);
  await fe.setVringAddr(vringAddr(ram, q, logging));
  await fe.setVringFd("SET_VRING_CALL", q.index, q.callFd);
  await fe.setVringFd("SET_VRING_KICK", q.index, q.kickFd);
}
